package checkpoint

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unpickleBytes decodes one pickle held in memory.
func unpickleBytes(data []byte) (any, *unpickler, error) {
	u := newUnpickler(bytes.NewReader(data), int64(len(data)), "test.pkl", "", 0)
	v, err := u.load()
	return v, u, err
}

// canonical converts an unpickled value to the JSON shape that
// pythonCanonicalScript produces, so the two can be compared as text.
func canonical(t *testing.T, v any) any {
	t.Helper()
	switch x := v.(type) {
	case nil:
		return nil
	case bool:
		return map[string]any{"bool": x}
	case int64:
		return map[string]any{"int": strconv.FormatInt(x, 10)}
	case *big.Int:
		return map[string]any{"int": x.String()}
	case float64:
		return map[string]any{"float": strconv.FormatUint(math.Float64bits(x), 10)}
	case string:
		return map[string]any{"str": x}
	case []byte:
		return map[string]any{"bytes": hex.EncodeToString(x)}
	case pyTuple:
		return map[string]any{"tuple": canonicalList(t, x)}
	case *pyList:
		return map[string]any{"list": canonicalList(t, x.Items)}
	case *pySet:
		items := canonicalList(t, x.Items)
		sort.Slice(items, func(i, j int) bool { return mustJSON(t, items[i]) < mustJSON(t, items[j]) })
		return map[string]any{"set": items}
	case *pyDict:
		pairs := make([]any, len(x.Keys))
		for i, k := range x.Keys {
			pairs[i] = []any{canonical(t, k), canonical(t, x.Values[i])}
		}
		return map[string]any{"dict": pairs}
	}
	t.Fatalf("unexpected value of type %s", typeName(v))
	return nil
}

func canonicalList(t *testing.T, items []any) []any {
	out := make([]any, len(items))
	for i, item := range items {
		out[i] = canonical(t, item)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pythonCanonicalScript pickles one structure with protocols 0 to 5 and
// prints, per protocol, the pickle in hex and the structure's canonical
// JSON form.
const pythonCanonicalScript = `
import collections, json, pickle, struct
shared = [1, 2]
obj = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63, 2**64, -(2**100), 10**40],
    "floats": [0.0, -0.0, 1.5, 1e300, -2.5e-300, float("inf"), float("-inf")],
    "strs": ["", "ascii", "\u00fcn\u00efc\u00f6d\u00e9 \u2713 \U0001F600", "a\nb\\c'\"", "x" * 300],
    "bytes": [b"", b"\x00\xff", bytes(range(256)), bytearray(b"ab")],
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    "consts": [True, False, None],
    "nested": {"a": [{"b": (1, [2, {"c": 3}])}], 7: "int key", (1, 2): "tuple key"},
    "set": {1, 2, 3},
    "frozenset": frozenset(["x", "y"]),
    "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
    "shared": [shared, shared],
    "many": list(range(2500)),
}

def canon(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"float": str(struct.unpack("<Q", struct.pack("<d", v))[0])}
    if isinstance(v, str):
        return {"str": v}
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": bytes(v).hex()}
    if isinstance(v, tuple):
        return {"tuple": [canon(x) for x in v]}
    if isinstance(v, list):
        return {"list": [canon(x) for x in v]}
    if isinstance(v, (set, frozenset)):
        return {"set": sorted((canon(x) for x in v), key=lambda c: json.dumps(c, separators=(",", ":")))}
    if isinstance(v, dict):
        return {"dict": [[canon(k), canon(x)] for k, x in v.items()]}
    raise TypeError(type(v))

print(json.dumps({
    "canonical": canon(obj),
    "pickles": [pickle.dumps(obj, protocol=p).hex() for p in range(6)],
}))
`

func TestUnpickleMatchesPython(t *testing.T) {
	out, err := exec.Command(torchPython, "-c", pythonCanonicalScript).Output()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s failed: %v", torchPython, err)
		}
		t.Skipf("%s failed (%v); skipping the Python comparison", torchPython, err)
	}
	var res struct {
		Canonical json.RawMessage `json:"canonical"`
		Pickles   []string        `json:"pickles"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	var want any
	json.Unmarshal(res.Canonical, &want)
	wantJSON := mustJSON(t, want)

	for proto, h := range res.Pickles {
		data, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := unpickleBytes(data)
		if err != nil {
			t.Errorf("protocol %d: %v", proto, err)
			continue
		}
		got := mustJSON(t, canonical(t, v))
		if got != wantJSON {
			t.Errorf("protocol %d: decoded value mismatch:\ngot  %.600s\nwant %.600s", proto, got, wantJSON)
		}
	}
}

func TestUnpickleInertObjects(t *testing.T) {
	cases := []struct {
		name, pickle, class string
	}{
		{"OBJ", "(c__main__\nFoo\nK\x01o.", "__main__.Foo"},
		{"INST", "(K\x01i__main__\nFoo\n.", "__main__.Foo"},
		{"REDUCE on os.system", "\x80\x02cposix\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.", "posix.system"},
		{"NEWOBJ with BUILD", "\x80\x02cmodels.yolo\nModel\n)\x81}X\x01\x00\x00\x00aK\x02sb.", "models.yolo.Model"},
		{"STACK_GLOBAL", "\x80\x04\x8c\x04evil\x8c\x03fun\x93)R.", "evil.fun"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, u, err := unpickleBytes([]byte(c.pickle))
			if err != nil {
				t.Fatal(err)
			}
			o, ok := v.(*pyObject)
			if !ok {
				t.Fatalf("result is a %s, want an object", typeName(v))
			}
			if o.ClassName() != c.class {
				t.Errorf("class mismatch: got %s, want %s", o.ClassName(), c.class)
			}
			if !u.globals[c.class] {
				t.Errorf("global %s not recorded; got %v", c.class, u.globals)
			}
		})
	}
}

func TestUnpickleBuildState(t *testing.T) {
	v, _, err := unpickleBytes([]byte("\x80\x02cmodels.yolo\nModel\n)\x81}X\x01\x00\x00\x00aK\x02sb."))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*pyObject).StateDict()
	if d == nil {
		t.Fatal("BUILD state not kept")
	}
	if a, _ := d.Get("a"); a != int64(2) {
		t.Errorf("state a mismatch: got %v, want 2", a)
	}
}

func TestUnpickleStackOps(t *testing.T) {
	// MARK 1 2 POP_MARK, 3 DUP, TUPLE2 -> (3, 3)
	v, _, err := unpickleBytes([]byte("\x80\x02(K\x01K\x021K\x032\x86."))
	if err != nil {
		t.Fatal(err)
	}
	tup, ok := v.(pyTuple)
	if !ok || len(tup) != 2 || tup[0] != int64(3) || tup[1] != int64(3) {
		t.Errorf("result mismatch: got %s", mustJSON(t, canonical(t, v)))
	}
}

func TestUnpickleCycleIsSafe(t *testing.T) {
	// A list that contains itself, inside a dict: searching for tensors
	// must terminate.
	data := []byte("\x80\x02}q\x00X\x01\x00\x00\x00l]q\x01h\x01as.")
	v, u, err := unpickleBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	f := &File{Path: "cycle"}
	if err := collectModels(f, v, u.values); err != nil {
		t.Fatal(err)
	}
	if len(f.Models) != 0 {
		t.Errorf("model count mismatch: got %d, want 0", len(f.Models))
	}
}

func TestUnpickleDeepNestingIsRejected(t *testing.T) {
	data := []byte("\x80\x02")
	data = append(data, bytes.Repeat([]byte("]"), 10000)...)
	data = append(data, bytes.Repeat([]byte("a"), 9999)...)
	data = append(data, '.')
	v, u, err := unpickleBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	f := &File{Path: "deep"}
	err = collectModels(f, v, u.values)
	if err == nil || !strings.Contains(err.Error(), "nesting exceeds") {
		t.Errorf("error mismatch: got %v, want a nesting error", err)
	}
}

func TestSharedTuplesAreSearchedOnce(t *testing.T) {
	// t0 = (None,) and t(i+1) = (ti, ti) for 200 levels: 2^200 paths.
	p := newPickle().op("N\x85q\x00")
	for i := 0; i < 200; i++ {
		p.op("h\x00h\x00\x86q\x00")
	}
	p.op(".")
	v, u, err := unpickleBytes(p.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- collectModels(&File{Path: "laughs"}, v, u.values) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("searching nested shared tuples did not finish in 5s")
	}
}

func TestSharedParameterDictIsBounded(t *testing.T) {
	// 2000 modules share one _parameters dict of 200 tensors through the
	// memo: 400,000 tensor visits from a pickle of under 200 kB. The search
	// must stop with an error rather than copy every visit.
	p := newPickle().global("collections", "OrderedDict").op(")R(")
	for i := 0; i < 200; i++ {
		p.str("w"+strconv.Itoa(i)).tensor("FloatStorage", "0", 4, 0, 4)
	}
	p.op("u").op("r\x01\x00\x00\x00") // LONG_BINPUT 1: the shared dict
	p.op("0")                         // POP
	p.op("}(").str("children").op("(")
	for i := 0; i < 2000; i++ {
		p.global("torch.nn", "Conv2d").op(")\x81}(").str("_parameters").op("j\x01\x00\x00\x00").str("_modules").op("}ub")
	}
	p.op("lu.")
	u := newUnpickler(bytes.NewReader(p.Bytes()), int64(p.Len()), "shared.pkl", "", 0)
	u.persistentLoad = func(pid any) (any, error) {
		return NewFileStorage("0", Float32, 4, bytes.NewReader(make([]byte, 16)), 0, byteOrder(true), "shared.pkl"), nil
	}
	v, err := u.load()
	if err != nil {
		t.Fatal(err)
	}
	err = collectModels(&File{Path: "shared.pkl"}, v, u.values)
	if !errors.Is(err, ErrDeclaredSize) {
		t.Errorf("error mismatch: got %v, want ErrDeclaredSize", err)
	}
}
