package mcpproxy

import (
	"bytes"
	"encoding/json"
	"testing"
)

var envelopeCases = []string{
	`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a \"}] b"}]}}`,
	`{"jsonrpc":"2.0","id":"x","method":"notifications/progress","params":{"progressToken":1}}`,
	` { "id" : 7 , "method" : "m" } `,
	`{"id":null,"error":{"code":-32600,"message":"bad"}}`,
	`{"method":"a","method":"b"}`, `{"id":1,"id":2}`, `{"ID":1,"Method":"x"}`, `{"iD":[1,{"a":"]"}]}`,
	`{"method":"\u0061"}`, `{"method":null}`, `{"method":1}`, `{"method":"é"}`, "{\"method\":\"\xff\"}",
	`{"i\u0064":1}`, `{"id":{"nested":{"id":2}},"method":"m"}`, `{}`, `[]`, `"s"`, `1`, `null`, ``, `{`,
	`{"id":1,}`, `{"id":-1.5e3}`, `{"id":true,"x":[[[]]],"method":"z"}`, `{"a":"\\","id":3}`,
}

// readEnvelope reads what json.Unmarshal reads, error or not.
func TestReadEnvelope(t *testing.T) {
	for _, c := range envelopeCases {
		checkEnvelope(t, []byte(c))
	}
}

func FuzzReadEnvelope(f *testing.F) {
	for _, c := range envelopeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, msg []byte) { checkEnvelope(t, msg) })
}

func checkEnvelope(t *testing.T, msg []byte) {
	var want envelope
	werr := json.Unmarshal(msg, &want)
	got, err := readEnvelope(msg)
	if (err == nil) != (werr == nil) {
		t.Fatalf("%q: error %v, json.Unmarshal %v", msg, err, werr)
	}
	if werr == nil && (!bytes.Equal(got.ID, want.ID) || got.Method != want.Method) {
		t.Fatalf("%q: %q %q, json.Unmarshal %q %q", msg, got.ID, got.Method, want.ID, want.Method)
	}
}

// BenchmarkReadEnvelope is FromServer's reading of an upstream answer.
func BenchmarkReadEnvelope(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"Echo: mcpload-3-1234"}],"isError":false}}`)
	b.Run("quick", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = readEnvelope(msg)
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var env envelope
			_ = json.Unmarshal(msg, &env)
		}
	})
}
