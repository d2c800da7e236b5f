// Cluster DNS for the local e2e cluster: CoreDNS with the handful of plugins a kube-dns
// Service needs, instead of its default build (every cloud provider's SDK).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// Directives in the order the plugins run (a subset of CoreDNS's plugin.cfg, same order).
var directives = []string{"errors", "log", "health", "ready", "cache", "loadbalance", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
