// Command cainjector runs cert-manager's CA injector (the upstream
// pkg/controller/cainjector reconcilers, unmodified) against a test API server.
//
// Why our own main: upstream's cmd/cainjector is a separate Go module that is
// not published on the module proxy, so only the library module can be
// required. This file does what cmd/cainjector/app does, minus what tests do
// not need (leader election, metrics server, pprof, config files): a
// controller-runtime manager with the same scheme and cache settings, and
// cainjector.RegisterAllInjectors for the enabled injectable kinds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	// Our own FlagSet: controller-runtime already defines --kubeconfig on the global one.
	flags := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(flags) // -v=N for verbosity; klog writes to stderr
	kubeconfig := flags.String("kubeconfig", "", "path to a kubeconfig (required)")
	namespace := flags.String("namespace", "", "watch only this namespace (default: all)")
	kinds := flags.String("injectables",
		strings.Join([]string{
			cainjector.ValidatingWebhookConfigurationName,
			cainjector.MutatingWebhookConfigurationName,
			cainjector.APIServiceName,
			cainjector.CustomResourceDefinitionName,
		}, ","),
		"comma-separated kinds to inject into")
	_ = flags.Parse(os.Args[1:]) // ExitOnError: never returns an error
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "error: --kubeconfig is required")
		os.Exit(2)
	}
	logf.InitLogs()
	ctrl.SetLogger(logf.Log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "cainjector")
	if err := run(ctx, *kubeconfig, *namespace, strings.Split(*kinds, ",")); err != nil {
		logf.Log.Error(err, "cert-manager cainjector failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, kubeconfig, namespace string, kinds []string) error {
	log := logf.FromContext(ctx)
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	restConfig = util.RestConfigWithUserAgent(restConfig, "cainjector")

	var namespaces map[string]cache.Config
	if namespace != "" {
		namespaces = map[string]cache.Config{namespace: {}}
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{
			ReaderFailOnMissingInformer: true,
			DefaultNamespaces:           namespaces,
		},
		// As upstream: Secrets are read directly, and only their metadata is cached.
		Client: client.Options{
			Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		},
		LeaderElection:         false,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	// As upstream: the Certificate data source needs the Certificate CRD; wait for it.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		crd := apiext.CustomResourceDefinition{}
		err := direct.Get(ctx, client.ObjectKey{Name: "certificates.cert-manager.io"}, &crd)
		if err != nil {
			log.Info("waiting for the certificates.cert-manager.io CRD", "error", err.Error())
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the certificates.cert-manager.io CRD never appeared: %w", err)
	}

	enabled := map[string]bool{}
	for _, kind := range kinds {
		if kind = strings.TrimSpace(kind); kind != "" {
			enabled[kind] = true
		}
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    namespace,
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor:        enabled,
	})
	if err != nil {
		return fmt.Errorf("registering the injectors: %w", err)
	}
	log.Info("cert-manager cainjector starting", "injectables", kinds, "namespace", namespace)
	return mgr.Start(ctx)
}
