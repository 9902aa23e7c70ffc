package registry

import (
	"errors"
	"testing"
)

// instanceSeeds are documents the reference writers and other clients
// produce, plus the malformed shapes registry-format.md warns about.
var instanceSeeds = []string{
	referenceDoc,
	`{"host":"10.0.0.1","port":"8080","metadata":{"weight":"3","priority":2,"tags":["a","b"]}}`,
	`{"host":"2001:db8::1","port":8080.0,"metadata":{"weight":-1}}`,
	`{"host":"::ffff:10.0.0.12","port":1,"metadata":{"weight":70000}}`,
	`{"host":"api.example.org.","port":65535,"metadata":{"nested":{"a":[1,2,{"b":null}]}}}`,
	`{"host":"fe80::1%eth0","port":80}`,
	`{"host":"not a host!","port":80}`,
	`{"host":"10.0.0.1","port":0}`,
	`{"host":"10.0.0.1","port":65536}`,
	`{"host":"10.0.0.1","port":1.5}`,
	`{"host":"10.0.0.1","port":"NaN","metadata":{"weight":"Infinity"}}`,
	`{"host":"10.0.0.1","port":1e308,"registered_at":1e308,"last_heartbeat":-1e308}`,
	`{"host":"10.0.0.1"}`,
	`{"host":"10.0.0.1","port":80,"metadata":"x"}`,
	`[{"host":"10.0.0.1","port":80}]`,
	`null`,
	`{"host":"10.0.0.1","port":80`,
	"{\"host\":\"\xff\xfe\",\"port\":80}",
	"",
}

func FuzzDecodeInstance(f *testing.F) {
	for _, s := range instanceSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := DecodeInstance("svc", "id", data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeInstance(%q) error %v does not wrap ErrMalformed", data, err)
			}
			return
		}
		if in.Port < 1 {
			t.Fatalf("DecodeInstance(%q) accepted port %d", data, in.Port)
		}
		if in.Host == "" {
			t.Fatalf("DecodeInstance(%q) accepted an empty host", data)
		}
		if in.Addr.IsValid() && in.Addr.Is4In6() {
			t.Fatalf("DecodeInstance(%q) kept IPv4-mapped address %v", data, in.Addr)
		}
		if in.Service != "svc" || in.ID != "id" {
			t.Fatalf("DecodeInstance(%q) renamed the instance to %q/%q", data, in.Service, in.ID)
		}
		if len(data) > MaxDocumentSize {
			t.Fatalf("DecodeInstance accepted a %d-byte document", len(data))
		}
	})
}

func FuzzDecodeHealth(f *testing.F) {
	for _, s := range []string{
		`{"status": "healthy", "checked_at": 1764090000.5}`,
		`{"status": "unhealthy", "checked_at": "1764090000"}`,
		`{"status": "unknown"}`,
		`{"status": "HeAlThY", "checked_at": 1e308}`,
		`{"status": 1}`,
		`{"checked_at": -1}`,
		`["healthy"]`,
		`healthy`,
		`null`,
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHealth(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeHealth(%q) error %v does not wrap ErrMalformed", data, err)
			}
			return
		}
		if h.Status > StatusUnhealthy {
			t.Fatalf("DecodeHealth(%q) status %d out of range", data, h.Status)
		}
	})
}
