//go:build tools

// Package tools names the Prometheus command this module builds, so that
// `go mod tidy` keeps every module it needs in go.sum. The build itself is
// `go build -tags remove_all_sd github.com/prometheus/prometheus/cmd/prometheus`
// (see evictwatch/testing/prometheus.py): remove_all_sd leaves out every
// service-discovery plugin except file and http (plugins/minimum.go), so the
// cloud SDKs are neither downloaded into the build nor compiled.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
