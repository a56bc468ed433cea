// Command controller runs cert-manager's own controllers (the upstream
// library packages, unmodified) against a test API server.
//
// Why our own main: upstream's cmd/controller is a separate Go module that is
// not published on the module proxy, so only the library module can be
// required. This file does what cmd/controller/app does, minus what tests do
// not need (leader election, metrics and health servers, config files, ACME,
// Vault, Venafi and the Gateway/Ingress shims): it builds a ContextFactory,
// constructs the enabled controllers from the registry their init funcs fill,
// starts the shared informer factories and runs every control loop.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each import registers its controller (or issuer type) in an init func.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// defaultControllers is what a namespaced or cluster SelfSigned/CA issuer and
// its Certificates need; the names are the upstream ControllerName constants.
var defaultControllers = []string{
	"issuers",
	"clusterissuers",
	"certificates-trigger",
	"certificates-issuing",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-readiness",
	"certificates-revision-manager",
	"certificaterequests-approver",
	"certificaterequests-issuer-selfsigned",
	"certificaterequests-issuer-ca",
}

func main() {
	// Our own FlagSet, as in cainjector: no linked-in library can clash with our flags.
	flags := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(flags) // -v=N for verbosity; klog writes to stderr
	kubeconfig := flags.String("kubeconfig", "", "path to a kubeconfig (required)")
	namespace := flags.String("namespace", "", "watch only this namespace (default: all)")
	clusterResourceNamespace := flags.String("cluster-resource-namespace", "kube-system",
		"namespace of the Secrets that ClusterIssuers refer to")
	controllers := flags.String("controllers", strings.Join(defaultControllers, ","),
		"comma-separated controllers to run")
	workers := flags.Int("workers", 5, "workers per controller")
	_ = flags.Parse(os.Args[1:]) // ExitOnError: never returns an error
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "error: --kubeconfig is required")
		os.Exit(2)
	}
	logf.InitLogs()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	if err := run(ctx, *kubeconfig, *namespace, *clusterResourceNamespace, strings.Split(*controllers, ","), *workers); err != nil {
		logf.Log.Error(err, "cert-manager controller failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, kubeconfig, namespace, clusterResourceNamespace string, enabled []string, workers int) error {
	log := logf.FromContext(ctx)
	// The values upstream defaults to (internal/apis/config/controller/v1alpha1/defaults.go).
	opts := controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		Namespace:          namespace,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace:        clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CopiedAnnotationPrefixes: []string{
				"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/",
			},
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
		SchedulerOptions: controllerpkg.SchedulerOptions{MaxConcurrentChallenges: 60},
	}
	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	// Informer factories are shared: every controller's Build gets the same ones.
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the shared context: %w", err)
	}

	known := controllerpkg.Known()
	var loops []controllerpkg.Interface
	var names []string
	for _, name := range enabled {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if namespace != "" && name == "clusterissuers" {
			continue // upstream skips it too when scoped to one namespace
		}
		construct, ok := known[name]
		if !ok {
			available := make([]string, 0, len(known))
			for n := range known {
				available = append(available, n)
			}
			slices.Sort(available)
			return fmt.Errorf("unknown controller %q; built in: %s", name, strings.Join(available, ", "))
		}
		loop, err := construct(factory)
		if err != nil {
			return fmt.Errorf("constructing %s: %w", name, err)
		}
		loops = append(loops, loop)
		names = append(names, name)
	}

	// Controllers ask for their informers when constructed, so start the factories after.
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())

	errs := make(chan error, len(loops))
	var wg sync.WaitGroup
	for i, loop := range loops {
		wg.Go(func() {
			log.Info("starting controller", "controller", names[i])
			if err := loop.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", names[i], err)
			}
		})
	}
	log.Info("cert-manager controllers started", "controllers", names, "namespace", namespace)
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	wg.Wait()
	return nil
}
