// Package conformance runs the Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance) against the GatewayClass named by
// -gateway-class. Every suite option comes from the suite's own flags
// (-conformance-profiles, -report-output, -supported-features, ...); when
// neither -supported-features nor -all-features nor -run-test is given, the
// suite reads the features from the GatewayClass status.supportedFeatures.
//
// Two additions. Every test runs serially (see TestConformance for why). And
// with -agc-dump-dir, a failed test leaves behind what a diagnosis needs and
// the suite's cleanup would delete: the Gateway API objects with their
// statuses, the Services and EndpointSlices they point at (all of which feed
// `agc-controller translate` as they are) and, with -agc-dataplane-dir, each
// Gateway's generated NGINX config and error log, or, with -agc-dataplane-pods
// (in cluster), the log of every data-plane pod.
//
// hack/conformance.py starts the cluster, the node agent and the controller,
// then runs this test binary; see README.md.
package conformance

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientset "k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
)

var (
	dumpDir       = flag.String("agc-dump-dir", "", "write the cluster state of each failed test here")
	dataplaneDir  = flag.String("agc-dataplane-dir", "", "the controller's --local-state-dir; failed tests copy each Gateway's nginx.conf from it")
	dataplanePods = flag.Bool("agc-dataplane-pods", false, "in cluster: failed tests save the log of every data-plane pod")
)

// The container of a data-plane pod (agc_controller/dataplane/manifests.py) and
// the label every data-plane pod carries.
const (
	dataplaneContainer = "dataplane"
	dataplaneSelector  = "app.kubernetes.io/name=agc-dataplane"
	// the last lines of each pod's log a dump keeps
	dataplaneLogLines = 2000
)

// What a failed test's dump holds: enough to replay the translation offline.
var dumpedKinds = []schema.GroupVersionKind{
	{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "GatewayClass"},
	{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "Gateway"},
	{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"},
	{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "GRPCRoute"},
	{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "BackendTLSPolicy"},
	{Group: "gateway.networking.k8s.io", Version: "v1beta1", Kind: "ReferenceGrant"},
	{Group: "", Version: "v1", Kind: "Service"},
	{Group: "discovery.k8s.io", Version: "v1", Kind: "EndpointSlice"},
}

func TestConformance(t *testing.T) {
	opts := conformance.DefaultOptions(t)
	for i := range tests.ConformanceTests {
		test := &tests.ConformanceTests[i]
		// The suite records a test's result as what t.Run returns, and t.Run
		// returns true as soon as a test calls t.Parallel: a parallel test that
		// fails afterwards would be reported as passed. Run every test serially
		// so that the report says what happened (their cases stay parallel).
		test.Parallel = false
		if *dumpDir != "" {
			dumpOnFailure(test, opts.Client)
		}
	}
	conformance.RunConformanceWithOptions(t, opts)
}

// dumpOnFailure wraps the test's body so that a failure dumps the cluster
// state first. The cleanup is registered inside the body, after the suite
// registered the deletion of the test's manifests, so it runs before them
// (cleanups run last-in first-out) and after any parallel subtests ended.
func dumpOnFailure(test *suite.ConformanceTest, c client.Client) {
	body := test.Test
	name := test.ShortName
	test.Test = func(t *testing.T, s *suite.ConformanceTestSuite) {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			if path, err := dumpState(c, s.Clientset, name); err != nil {
				t.Logf("agc: could not dump the cluster state: %v", err)
			} else {
				t.Logf("agc: cluster state at the failure: %s", path)
			}
		})
		body(t, s)
	}
}

func dumpState(c client.Client, cs clientset.Interface, test string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(*dumpDir, test)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var out bytes.Buffer
	for _, gvk := range dumpedKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(ctx, list); err != nil {
			fmt.Fprintf(&out, "# listing %s failed: %v\n", gvk.Kind, err)
			continue
		}
		for i := range list.Items {
			item := &list.Items[i]
			if skipNamespace(item.GetNamespace()) {
				continue
			}
			item.SetManagedFields(nil)
			data, err := yaml.Marshal(item.Object)
			if err != nil {
				return "", err
			}
			out.WriteString("---\n")
			out.Write(data)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "objects.yaml"), out.Bytes(), 0o644); err != nil {
		return "", err
	}
	if *dataplaneDir != "" {
		if err := copyNginxConfigs(*dataplaneDir, dir); err != nil {
			return "", err
		}
	}
	if *dataplanePods {
		if err := savePodLogs(ctx, cs, dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// savePodLogs writes the log of each data-plane pod to
// <dir>/dataplane/<namespace>_<pod>.log (its last dataplaneLogLines lines).
func savePodLogs(ctx context.Context, cs clientset.Interface, dir string) error {
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: dataplaneSelector})
	if err != nil {
		return err
	}
	if len(pods.Items) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "dataplane"), 0o755); err != nil {
		return err
	}
	lines := int64(dataplaneLogLines)
	for _, pod := range pods.Items {
		options := &corev1.PodLogOptions{Container: dataplaneContainer, TailLines: &lines}
		data, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, options).DoRaw(ctx)
		if err != nil {
			// a pod not started yet, or gone meanwhile: say so in its place
			data = []byte(fmt.Sprintf("agc: no log: %v\n", err))
		}
		path := filepath.Join(dir, "dataplane", pod.Namespace+"_"+pod.Name+".log")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// The control plane's own objects say nothing about a Gateway.
func skipNamespace(namespace string) bool {
	return namespace == "kube-system" || namespace == "kube-public" || namespace == "kube-node-lease"
}

// copyNginxConfigs copies each <dataplane>/<instance>/nginx.conf and error.log to
// <dir>/nginx/<instance>.conf and <instance>.error.log.
func copyNginxConfigs(dataplane, dir string) error {
	confs, err := filepath.Glob(filepath.Join(dataplane, "*", "nginx.conf"))
	if err != nil {
		return err
	}
	sort.Strings(confs)
	if len(confs) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "nginx"), 0o755); err != nil {
		return err
	}
	for _, conf := range confs {
		data, err := os.ReadFile(conf)
		if err != nil {
			continue // the Gateway went away meanwhile
		}
		instance := filepath.Base(filepath.Dir(conf))
		if err := os.WriteFile(filepath.Join(dir, "nginx", instance+".conf"), data, 0o644); err != nil {
			return err
		}
		if data, err := os.ReadFile(filepath.Join(filepath.Dir(conf), "error.log")); err == nil {
			if err := os.WriteFile(filepath.Join(dir, "nginx", instance+".error.log"), data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
