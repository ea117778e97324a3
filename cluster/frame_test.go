package cluster

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

func mustAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []frame{
		{Kind: kindTopic, From: Peer{"vs1", mustAddr("192.168.0.1")}, Topic: "vrrp/www", Epoch: 1 << 60, Seq: 7, Payload: []byte{1, 2, 3}},
		{Kind: kindTopic, From: Peer{"vs2", mustAddr("fd99::2")}, Topic: "t", Payload: nil},
		{Kind: kindTopic, From: Peer{Name: "no-addr"}, Topic: "t", Payload: []byte("x")},
		{Kind: kindState, From: Peer{"vs1", mustAddr("10.99.0.1")}, Payload: []byte(`[]`)},
	}
	for _, f := range tests {
		b, err := f.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		var g frame
		if err := g.UnmarshalBinary(b); err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if g.Kind != f.Kind || g.From != f.From || g.Topic != f.Topic || g.Epoch != f.Epoch || g.Seq != f.Seq || !bytes.Equal(g.Payload, f.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", g, f)
		}
	}
}

func TestFrameErrors(t *testing.T) {
	bad := []frame{
		{Kind: 9, From: Peer{Name: "a"}},
		{Kind: kindTopic, From: Peer{Name: ""}, Topic: "t"},
		{Kind: kindTopic, From: Peer{Name: "a"}, Topic: ""},
		{Kind: kindTopic, From: Peer{Name: string(make([]byte, 256))}, Topic: "t"},
	}
	for _, f := range bad {
		if _, err := f.MarshalBinary(); err == nil {
			t.Errorf("%+v encoded", f)
		}
	}
	good, _ := frame{Kind: kindTopic, From: Peer{"vs1", mustAddr("10.0.0.1")}, Topic: "t", Payload: []byte("p")}.MarshalBinary()
	corrupt := map[string][]byte{
		"empty":     nil,
		"short":     good[:3],
		"magic":     append([]byte{0}, good[1:]...),
		"version":   append([]byte{frameMagic, 2}, good[2:]...),
		"kind":      append([]byte{frameMagic, frameVersion, 7}, good[3:]...),
		"name cut":  good[:5],
		"addr len":  append(append([]byte{}, good[:7]...), 5, 1, 2, 3, 4, 5, 1, 't'),
		"topic cut": good[:len(good)-3],
		"seq cut":   good[:len(good)-12],
	}
	for name, b := range corrupt {
		var f frame
		if err := f.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: decoded %+v", name, f)
		}
	}
}

func TestDecodeStateRecords(t *testing.T) {
	recs := []stateRecord{{Node: "vs1", Epoch: 5, Version: 2, State: State{Name: "vs1", ConfigDigest: "d",
		Instances: map[string]InstanceState{"www": {State: "master", Master: true, Priority: 150, Since: time.Unix(1, 0).UTC(), AdvertInterval: time.Second}},
		Health:    map[string]bool{"a": true}}}}
	body, _ := json.Marshal(recs)
	got, err := decodeStateRecords(body)
	if err != nil || len(got) != 1 || got[0].State.Instances["www"].AdvertInterval != time.Second || !got[0].State.Health["a"] {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{`{`, `{}`, `[{"node":""}]`, `[{"node":"a","state":{"name":"b"}}]`} {
		if _, err := decodeStateRecords([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
	old := &stateRecord{Epoch: 5, Version: 3}
	if (stateRecord{Epoch: 5, Version: 3}).newerThan(old) || !(stateRecord{Epoch: 5, Version: 4}).newerThan(old) ||
		!(stateRecord{Epoch: 6, Version: 0}).newerThan(old) || (stateRecord{Epoch: 4, Version: 9}).newerThan(old) {
		t.Fatal("newerThan ordering wrong")
	}
}

func FuzzFrame(f *testing.F) {
	seed, _ := frame{Kind: kindTopic, From: Peer{"vs1", mustAddr("10.0.0.1")}, Topic: "vrrp/www", Payload: []byte{1, 2}}.MarshalBinary()
	f.Add(seed)
	st, _ := encodeStateFrame(Peer{"vs2", mustAddr("fd99::2")}, []stateRecord{{Node: "vs2", Version: 1}})
	f.Add(st)
	f.Add([]byte{frameMagic, frameVersion, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr frame
		if err := fr.UnmarshalBinary(b); err != nil {
			return
		}
		if fr.Kind == kindState {
			decodeStateRecords(fr.Payload) // must not panic
		}
		// Whatever decodes re-encodes to an equivalent frame.
		out, err := fr.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", fr, err)
		}
		var again frame
		if err := again.UnmarshalBinary(out); err != nil || again.From != fr.From || again.Topic != fr.Topic || again.Seq != fr.Seq || again.Epoch != fr.Epoch || !bytes.Equal(again.Payload, fr.Payload) {
			t.Fatalf("re-encode mismatch: %+v vs %+v (%v)", fr, again, err)
		}
	})
}
