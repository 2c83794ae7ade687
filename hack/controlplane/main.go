// Command llmfleet-controlplane runs a small, real Kubernetes control plane
// (embedded etcd + kube-apiserver + kube-controller-manager) on 127.0.0.1 for
// local development and integration tests. No scheduler, no kubelet.
//
// Usage:
//
//	llmfleet-controlplane [run] --data-dir DIR --port PORT [flags]
//	llmfleet-controlplane apiserver <kube-apiserver flags>            (internal)
//	llmfleet-controlplane controller-manager <kube-controller-manager flags> (internal)
//	llmfleet-controlplane version
//
// The supervisor ("run", the default) runs etcd in-process and re-executes
// itself for kube-apiserver and kube-controller-manager, because both
// components own process-global state (feature gates, klog flags, the legacy
// prometheus registry) and are not designed to share one process. Children
// are killed when the supervisor exits or dies (PR_SET_PDEATHSIG on Linux).
package main

import (
	"fmt"
	"os"

	_ "time/tzdata" // for CronJob time zone support, as upstream main packages do

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/component-base/version"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	args := os.Args[1:]
	sub := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "apiserver", "kube-apiserver":
		cmd := apiserverapp.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "controller-manager", "kube-controller-manager":
		cmd := kcmapp.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "version":
		fmt.Println(version.Get().GitVersion)
	case "run":
		os.Exit(runSupervisor(args))
	case "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", sub)
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  llmfleet-controlplane [run] --data-dir DIR --port PORT [flags]   start etcd + kube-apiserver + kube-controller-manager
  llmfleet-controlplane version                                  print the Kubernetes version built in
  llmfleet-controlplane run --help                               supervisor flags
`)
}
