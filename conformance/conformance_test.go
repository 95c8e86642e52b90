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
// Gateway's generated NGINX config and error log.
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

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
)

var (
	dumpDir      = flag.String("agc-dump-dir", "", "write the cluster state of each failed test here")
	dataplaneDir = flag.String("agc-dataplane-dir", "", "the controller's --local-state-dir; failed tests copy each Gateway's nginx.conf from it")
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
			if path, err := dumpState(c, name); err != nil {
				t.Logf("agc: could not dump the cluster state: %v", err)
			} else {
				t.Logf("agc: cluster state at the failure: %s", path)
			}
		})
		body(t, s)
	}
}

func dumpState(c client.Client, test string) (string, error) {
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
	return dir, nil
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
