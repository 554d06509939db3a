// Command agentapi-proxy-loopback serves the Go agentapi-proxy's session API
// (its pkg/proxy package, unchanged) on a loopback address only.
//
// The peer's own `agentapi-proxy server` listens on every interface (":PORT")
// and has no option to choose the address. Tests that compare agentproxy with
// the peer must keep all traffic on 127.0.0.1, so this command does what that
// one does (load the config, build the proxy, serve, shut the sessions down on
// SIGTERM) with a listen address that must be loopback. The build copies it
// into the peer's source tree as a package of that module.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/takutakahashi/agentapi-proxy/pkg/config"
	"github.com/takutakahashi/agentapi-proxy/pkg/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "loopback address and port to listen on")
	configPath := flag.String("config", "config.json", "configuration file of the peer")
	verbose := flag.Bool("verbose", false, "log every request")
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("--listen %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("--listen %q: the host must be a loopback address such as 127.0.0.1", *listen)
	}
	cfg, err := config.LoadConfig(*configPath)
	if err != nil {
		log.Fatalf("loading %s: %v", *configPath, err)
	}

	server := proxy.NewProxy(cfg, *verbose)
	server.StartMonitoring()
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listening on %s: %v", *listen, err)
	}
	echo := server.GetEcho()
	echo.Listener = listener
	go func() {
		if err := echo.Start(""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("serving: %v", err)
		}
	}()
	log.Printf("agentapi-proxy listening on http://%s", listener.Addr())

	quit := make(chan os.Signal, 1)
	signal.Notify(quit, os.Interrupt, syscall.SIGTERM)
	<-quit
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// As the peer's server command does: end every session's agentapi process group, then the server.
	if err := server.Shutdown(25 * time.Second); err != nil {
		log.Printf("shutting down sessions: %v", err)
	}
	if err := echo.Shutdown(ctx); err != nil {
		log.Printf("shutting down the server: %v", err)
	}
}
