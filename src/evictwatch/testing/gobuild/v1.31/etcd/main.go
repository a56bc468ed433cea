// Command etcd is etcd's own server entry point, built at the version that
// the pinned Kubernetes release requires, so the two are known to agree.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
