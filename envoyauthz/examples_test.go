package envoyauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentpdp/agentpdp/pdp"

	// Types the examples name in typed_config, so protojson can resolve
	// them and validation can look inside.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// parseBootstrap reads an Envoy YAML bootstrap the way Envoy does (YAML →
// JSON → proto, unknown fields rejected) and runs the proto validation
// rules on it and on every typed_config inside.
func parseBootstrap(src []byte) (*bootstrapv3.Bootstrap, error) {
	var doc any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, bs); err != nil {
		return nil, err
	}
	if err := validateDeep(bs.ProtoReflect()); err != nil {
		return nil, err
	}
	return bs, nil
}

type validatorAll interface{ ValidateAll() error }

// validateDeep runs ValidateAll on m, then unpacks every Any below it
// (typed_config) and validates that too; PGV does not look inside Anys.
func validateDeep(m protoreflect.Message) error {
	if v, ok := m.Interface().(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", m.Descriptor().FullName(), err)
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return validateDeep(inner.ProtoReflect())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validateDeep(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = validateDeep(mv.Message())
					return err == nil
				})
			}
		default:
			err = validateDeep(v.Message())
		}
		return err == nil
	})
	return err
}

// extAuthz finds the ext_authz filter of the first HTTP connection manager.
func extAuthz(bs *bootstrapv3.Bootstrap) (*hcmv3.HttpConnectionManager, *extauthzv3.ExtAuthz) {
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					ea := &extauthzv3.ExtAuthz{}
					if hf.GetTypedConfig().UnmarshalTo(ea) == nil {
						return hcm, ea
					}
				}
			}
		}
	}
	return nil, nil
}

// exampleProblems lists what would make a valid bootstrap an unsafe
// agentpdp deployment.
func exampleProblems(bs *bootstrapv3.Bootstrap) []string {
	hcm, ea := extAuthz(bs)
	if ea == nil {
		return []string{"no ext_authz filter in any http_connection_manager"}
	}
	var p []string
	if ea.GetFailureModeAllow() {
		p = append(p, "failure_mode_allow must be false: an unreachable agentpdp must not let calls through")
	}
	if wb := ea.GetWithRequestBody(); wb == nil || !wb.GetPackAsBytes() || !wb.GetAllowPartialMessage() || wb.GetMaxRequestBytes() == 0 {
		p = append(p, fmt.Sprintf("with_request_body = %v, want max_request_bytes, allow_partial_message and pack_as_bytes", wb))
	}
	if !ea.GetIncludePeerCertificate() {
		p = append(p, "include_peer_certificate must be true")
	}
	if !slices.Contains(ea.GetMetadataContextNamespaces(), DefaultMetadataNamespace) {
		p = append(p, fmt.Sprintf("metadata_context_namespaces = %v, want %s", ea.GetMetadataContextNamespaces(), DefaultMetadataNamespace))
	}
	// Filter order: jwt_authn before ext_authz, the router last.
	var names []string
	for _, hf := range hcm.GetHttpFilters() {
		names = append(names, hf.GetName())
	}
	ij, ie, ir := slices.Index(names, "envoy.filters.http.jwt_authn"), slices.Index(names, "envoy.filters.http.ext_authz"), slices.Index(names, "envoy.filters.http.router")
	if ij < 0 || ij > ie || ir != len(names)-1 {
		p = append(p, fmt.Sprintf("http_filters = %v, want jwt_authn, ext_authz, …, router last", names))
	}
	cluster := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster == "" {
		return append(p, "ext_authz must use grpc_service.envoy_grpc")
	}
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() != cluster {
			continue
		}
		eps := c.GetLoadAssignment().GetEndpoints()
		if len(eps) == 0 || len(eps[0].GetLbEndpoints()) == 0 {
			return append(p, "cluster "+cluster+" has no endpoint")
		}
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()); got != DefaultAddr {
			p = append(p, fmt.Sprintf("cluster %s points at %s, want agentpdp's default %s", cluster, got, DefaultAddr))
		}
		if len(c.GetTypedExtensionProtocolOptions()) == 0 {
			p = append(p, "cluster "+cluster+" must speak HTTP/2 (gRPC)")
		}
		return p
	}
	return append(p, fmt.Sprintf("ext_authz names cluster %q, which is not defined", cluster))
}

func TestExampleEnvoyYAML(t *testing.T) {
	src, err := os.ReadFile("examples/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bs, err := parseBootstrap(src)
	if err != nil {
		t.Fatalf("examples/envoy.yaml: %v", err)
	}
	if p := exampleProblems(bs); len(p) > 0 {
		t.Errorf("examples/envoy.yaml: %s", strings.Join(p, "; "))
	}
}

// TestExampleEnvoyYAMLBroken proves the check above can fail: each broken
// copy of the example must be rejected.
func TestExampleEnvoyYAMLBroken(t *testing.T) {
	src, err := os.ReadFile("examples/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "failure_mode_allow: false", "failure_mode_alow: false", `unknown field "failure_mode_alow"`},
		{"zero body limit", "max_request_bytes: 65536", "max_request_bytes: 0", "MaxRequestBytes"},
		{"empty cluster name", "envoy_grpc: { cluster_name: agentpdp }", `envoy_grpc: { cluster_name: "" }`, "ClusterName"},
		{"unknown typed_config", "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz\n", "envoy.extensions.filters.http.ext_authz.v9.ExtAuthz\n", "unable to resolve"},
		{"bad enum", "transport_api_version: V3", "transport_api_version: V4", `"V4"`},
		{"bad port", "port_value: 9191", "port_value: 99999", "PortValue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(src, []byte(tc.old)) {
				t.Fatalf("example no longer contains %q", tc.old)
			}
			broken := bytes.Replace(src, []byte(tc.old), []byte(tc.new), 1)
			_, err := parseBootstrap(broken)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one mentioning %s", err, tc.want)
			}
		})
	}
	// Valid but unsafe: the semantic checks must catch it.
	unsafe := bytes.Replace(src, []byte("failure_mode_allow: false"), []byte("failure_mode_allow: true"), 1)
	bs, err := parseBootstrap(unsafe)
	if err != nil {
		t.Fatal(err)
	}
	if p := exampleProblems(bs); len(p) != 1 || !strings.Contains(p[0], "failure_mode_allow") {
		t.Errorf("failure_mode_allow: true not caught: %q", p)
	}
}

func TestExampleSidecar(t *testing.T) {
	src, err := os.ReadFile("examples/k8s-sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	kinds := map[string]int{}
	var envoyYAML, agentpdpYAML string
	policyFiles := fstest.MapFS{}
	var containers []string
	for {
		var doc struct {
			Kind     string                `yaml:"kind"`
			Metadata struct{ Name string } `yaml:"metadata"`
			Data     map[string]string     `yaml:"data"`
			Spec     struct {
				Containers []struct {
					Name string `yaml:"name"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		kinds[doc.Kind]++
		if s, ok := doc.Data["envoy.yaml"]; ok {
			envoyYAML = s
		}
		if s, ok := doc.Data["agentpdp.yaml"]; ok {
			agentpdpYAML = s
		}
		if doc.Metadata.Name == "agentpdp-policies" {
			for name, src := range doc.Data {
				policyFiles[name] = &fstest.MapFile{Data: []byte(src)}
			}
		}
		for _, c := range doc.Spec.Containers {
			containers = append(containers, c.Name)
		}
	}
	if kinds["Pod"] != 1 || kinds["ConfigMap"] < 2 {
		t.Errorf("kinds = %v, want one Pod and the ConfigMaps", kinds)
	}
	slices.Sort(containers)
	if !slices.Equal(containers, []string{"agentpdp", "app", "envoy"}) {
		t.Errorf("containers = %v", containers)
	}
	if envoyYAML == "" {
		t.Fatal("no envoy.yaml in any ConfigMap")
	}
	bs, err := parseBootstrap([]byte(envoyYAML))
	if err != nil {
		t.Fatalf("envoy ConfigMap: %v", err)
	}
	if p := exampleProblems(bs); len(p) > 0 {
		t.Errorf("envoy ConfigMap: %s", strings.Join(p, "; "))
	}

	// The policy ConfigMap must load as a policy set.
	if len(policyFiles) == 0 {
		t.Fatal("no agentpdp-policies ConfigMap")
	}
	if _, err := pdp.LoadFS(context.Background(), policyFiles, "agentpdp-policies"); err != nil {
		t.Errorf("policies ConfigMap: %v", err)
	}

	// The envoy: section must be a valid Config, strictly decoded.
	var top struct {
		Envoy yaml.Node `yaml:"envoy"`
	}
	if err := yaml.Unmarshal([]byte(agentpdpYAML), &top); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	raw, _ := yaml.Marshal(&top.Envoy)
	d := yaml.NewDecoder(strings.NewReader(string(raw)))
	d.KnownFields(true)
	if err := d.Decode(&cfg); err != nil {
		t.Fatalf("agentpdp.yaml envoy: %v", err)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != DefaultAddr {
		t.Errorf("sidecar agentpdp listens on %s; envoy.yaml expects %s", cfg.Addr, DefaultAddr)
	}
}
