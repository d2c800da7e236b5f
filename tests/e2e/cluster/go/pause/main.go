// pause holds a pod's namespaces open and does nothing else until it is told to stop: the
// sandbox image containerd runs first in every pod. Kubernetes' own is a few lines of C; this
// is the same in Go so the whole cluster builds from the Go module proxy and Debian.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of the pod's PID namespace (when shared), reap children so none stays a zombie.
	children := make(chan os.Signal, 8)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
