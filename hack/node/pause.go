// The sandbox ("pause") container of the test node's pods: holds the pod's
// namespaces and exits on SIGTERM or SIGINT. No registry is reachable here, so
// hack/node.sh builds it and hack/images.sh makes it an image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// as PID 1 it also reaps the pod's orphans: SIGCHLD is handled, children are waited for
	children := make(chan os.Signal, 8)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
