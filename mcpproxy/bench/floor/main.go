// Command floor is the cheapest MCP proxy Go's net/http makes: it reads
// each POST, sends it to the upstream over a keep-alive http.Transport and
// copies the answer back, deciding nothing and logging nothing. Measured
// beside agentpdp in mcpproxy/bench/compare.sh, it is what the second HTTP
// hop alone costs on the host of that run: agentpdp's added latency and
// throughput are read against it as well as against talking direct.
//
// With -own it sends upstream with agentpdp's own upstream client instead
// (mcpproxy.NewUpstreamTransport), so agentpdp minus that floor is what the
// door's own work costs.
//
// JSON answers only (the Go echo upstream never streams); loopback only.
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/agentpdp/agentpdp/mcpproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18140", "listen address (loopback)")
	upstream := flag.String("upstream", "http://127.0.0.1:18100/mcp", "upstream MCP endpoint")
	own := flag.Bool("own", false, "send upstream with agentpdp's upstream client, not http.Transport")
	flag.Parse()
	if host, _, err := net.SplitHostPort(*listen); err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("floor: listen on loopback, not %q", *listen)
	}
	var tr http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	if *own {
		tr = mcpproxy.NewUpstreamTransport(tr.(*http.Transport))
	}
	pass := []string{"Content-Type", "Accept", "Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name"}
	h := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, *upstream, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, k := range pass {
			if v := r.Header.Get(k); v != "" {
				req.Header.Set(k, v)
			}
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, k := range []string{"Content-Type", "Mcp-Session-Id"} {
			if v := resp.Header.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(h)))
}
