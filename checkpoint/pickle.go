package checkpoint

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the unpickler. Every other length is bounded by the bytes that
// remain in the pickle.
const (
	// maxStackDepth bounds the unpickler's value stack and mark stack.
	// torch.save batches list and dict items by 1000, so real pickles stay
	// far below it.
	maxStackDepth = 1 << 20
	// maxValues bounds the number of values one pickle may create.
	// NOTE: each value costs some tens of bytes, so a pickle of n bytes may
	// still allocate a few tens of times n before this limit stops it.
	maxValues = 1 << 23
	// maxTextNumber bounds the digits of a protocol 0 INT, LONG or FLOAT,
	// because converting a long decimal string is quadratic.
	maxTextNumber = 4096
)

// unpickler decodes one pickle into inert values. It never imports or calls
// anything: globals become *pyGlobal records, and REDUCE, NEWOBJ and BUILD
// on them produce *pyObject values, except for the few torch functions and
// containers that rebuild recognises.
type unpickler struct {
	r     *bufio.Reader
	pos   int64 // bytes consumed
	limit int64 // bytes available from the start of the pickle

	path   string // file path for errors
	record string // zip entry or part of the file, for errors
	base   int64  // offset of the pickle inside the record, for errors

	stack  []any
	marks  []int
	memo   map[int64]any
	values int
	proto  int

	// opStart is the offset of the opcode being executed.
	opStart int64

	// persistentLoad resolves a persistent id; nil rejects PERSID opcodes.
	persistentLoad func(pid any) (any, error)
	// globals collects every global the pickle names.
	globals map[string]bool
}

// newUnpickler returns an unpickler reading at most limit bytes from r.
func newUnpickler(r io.Reader, limit int64, path, record string, base int64) *unpickler {
	return &unpickler{
		r:       bufio.NewReaderSize(r, 64<<10),
		limit:   limit,
		path:    path,
		record:  record,
		base:    base,
		memo:    make(map[int64]any),
		globals: make(map[string]bool),
	}
}

// errorf returns a *FormatError at the current opcode.
func (u *unpickler) errorf(kind error, format string, args ...any) *FormatError {
	return &FormatError{Path: u.path, Record: u.record, Offset: u.base + u.opStart, Reason: fmt.Sprintf(format, args...), Err: kind}
}

func (u *unpickler) remaining() int64 { return u.limit - u.pos }

// read returns the next n bytes, rejecting n beyond what remains.
func (u *unpickler) read(n int64, what string) ([]byte, error) {
	if n < 0 || n > u.remaining() {
		return nil, u.errorf(ErrDeclaredSize, "%s declares %d bytes but only %d remain in the pickle; the file is damaged or not a checkpoint", what, n, u.remaining())
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(u.r, buf); err != nil {
		return nil, u.errorf(ErrTruncated, "pickle ends inside %s: %v", what, err)
	}
	u.pos += n
	return buf, nil
}

func (u *unpickler) readByte() (byte, error) {
	if u.remaining() < 1 {
		return 0, u.errorf(ErrTruncated, "pickle ends without a STOP opcode; the file is truncated")
	}
	c, err := u.r.ReadByte()
	if err != nil {
		return 0, u.errorf(ErrTruncated, "pickle ends without a STOP opcode: %v", err)
	}
	u.pos++
	return c, nil
}

func (u *unpickler) readUint(n int, what string) (uint64, error) {
	b, err := u.read(int64(n), what)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

// readLine returns the bytes up to the next newline, without it.
func (u *unpickler) readLine(what string) (string, error) {
	var b strings.Builder
	for {
		c, err := u.readByte()
		if err != nil {
			return "", u.errorf(ErrTruncated, "pickle ends inside the text argument of %s", what)
		}
		if c == '\n' {
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}

func (u *unpickler) push(v any) error {
	if len(u.stack) >= maxStackDepth {
		return u.errorf(ErrDeclaredSize, "pickle stack exceeds %d values; the file is not a checkpoint", maxStackDepth)
	}
	u.stack = append(u.stack, v)
	return nil
}

// pushNew pushes a newly created value and counts it against maxValues.
func (u *unpickler) pushNew(v any) error {
	u.values++
	if u.values > maxValues {
		return u.errorf(ErrDeclaredSize, "pickle creates more than %d values; the file is not a checkpoint", maxValues)
	}
	return u.push(v)
}

func (u *unpickler) pop(op string) (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && n <= u.marks[len(u.marks)-1]) {
		return nil, u.errorf(ErrMalformed, "opcode %s needs a value but the pickle stack is empty", op)
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

func (u *unpickler) top(op string) (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && n <= u.marks[len(u.marks)-1]) {
		return nil, u.errorf(ErrMalformed, "opcode %s needs a value but the pickle stack is empty", op)
	}
	return u.stack[n-1], nil
}

// popMark returns the values above the topmost mark and removes them and
// the mark.
func (u *unpickler) popMark(op string) ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errorf(ErrMalformed, "opcode %s needs a MARK but none is open", op)
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) global(module, name string) *pyGlobal {
	g := &pyGlobal{Module: module, Name: name}
	u.globals[g.FullName()] = true
	return g
}

// load decodes one pickle up to its STOP opcode and returns its value.
func (u *unpickler) load() (any, error) {
	for {
		u.opStart = u.pos
		op, err := u.readByte()
		if err != nil {
			return nil, err
		}
		if op == '.' {
			v, err := u.pop("STOP")
			if err != nil {
				return nil, err
			}
			return v, nil
		}
		if err := u.step(op); err != nil {
			return nil, err
		}
	}
}

// step executes one opcode other than STOP.
func (u *unpickler) step(op byte) error {
	switch op {
	case 0x80: // PROTO
		p, err := u.readByte()
		if err != nil {
			return err
		}
		if p > 5 {
			return u.errorf(ErrMalformed, "unsupported pickle protocol %d", p)
		}
		u.proto = int(p)
	case 0x95: // FRAME
		n, err := u.readUint(8, "FRAME")
		if err != nil {
			return err
		}
		if n > uint64(u.remaining()) {
			return u.errorf(ErrDeclaredSize, "FRAME declares %d bytes but only %d remain in the pickle; the file is damaged or not a checkpoint", n, u.remaining())
		}
	case '(': // MARK
		if len(u.marks) >= maxStackDepth {
			return u.errorf(ErrDeclaredSize, "pickle opens more than %d MARKs; the file is not a checkpoint", maxStackDepth)
		}
		u.marks = append(u.marks, len(u.stack))
	case '0': // POP
		if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
			// CPython pops the mark when the stack above it is empty.
			u.marks = u.marks[:len(u.marks)-1]
			return nil
		}
		_, err := u.pop("POP")
		return err
	case '1': // POP_MARK
		_, err := u.popMark("POP_MARK")
		return err
	case '2': // DUP
		v, err := u.top("DUP")
		if err != nil {
			return err
		}
		return u.push(v)

	case 'N':
		return u.push(nil)
	case 0x88:
		return u.push(true)
	case 0x89:
		return u.push(false)
	case 'J': // BININT
		v, err := u.readUint(4, "BININT")
		if err != nil {
			return err
		}
		return u.push(int64(int32(uint32(v))))
	case 'K': // BININT1
		v, err := u.readUint(1, "BININT1")
		if err != nil {
			return err
		}
		return u.push(int64(v))
	case 'M': // BININT2
		v, err := u.readUint(2, "BININT2")
		if err != nil {
			return err
		}
		return u.push(int64(v))
	case 0x8a, 0x8b: // LONG1, LONG4
		width := 1
		if op == 0x8b {
			width = 4
		}
		n, err := u.readUint(width, "LONG length")
		if err != nil {
			return err
		}
		if width == 4 && int32(uint32(n)) < 0 {
			return u.errorf(ErrMalformed, "LONG4 has negative length %d", int32(uint32(n)))
		}
		b, err := u.read(int64(n), "LONG")
		if err != nil {
			return err
		}
		return u.pushNew(decodeLong(b))
	case 'G': // BINFLOAT
		b, err := u.read(8, "BINFLOAT")
		if err != nil {
			return err
		}
		return u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 'I', 'L', 'F': // INT, LONG, FLOAT (text)
		return u.textNumber(op)

	case 'S', 'V': // STRING, UNICODE (text)
		line, err := u.readLine("STRING")
		if err != nil {
			return err
		}
		var s string
		if op == 'S' {
			s, err = unquoteString(line)
			if err != nil {
				return u.errorf(ErrMalformed, "STRING argument is not a quoted string: %v", err)
			}
		} else {
			s = decodeRawUnicodeEscape(line)
		}
		return u.pushNew(s)
	case 'T', 'U', 'X', 0x8c, 0x8d, 'B', 'C', 0x8e, 0x96:
		return u.sized(op)

	case ')':
		return u.pushNew(pyTuple{})
	case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
		n := int(op - 0x84)
		t := make(pyTuple, n)
		for i := n - 1; i >= 0; i-- {
			v, err := u.pop("TUPLE")
			if err != nil {
				return err
			}
			t[i] = v
		}
		return u.pushNew(t)
	case 't': // TUPLE
		items, err := u.popMark("TUPLE")
		if err != nil {
			return err
		}
		return u.pushNew(pyTuple(items))
	case ']':
		return u.pushNew(&pyList{})
	case 'l': // LIST
		items, err := u.popMark("LIST")
		if err != nil {
			return err
		}
		return u.pushNew(&pyList{Items: items})
	case '}':
		return u.pushNew(newDict(nil))
	case 'd': // DICT
		items, err := u.popMark("DICT")
		if err != nil {
			return err
		}
		if len(items)%2 != 0 {
			return u.errorf(ErrMalformed, "DICT has an odd number of items (%d)", len(items))
		}
		d := newDict(nil)
		for i := 0; i < len(items); i += 2 {
			d.Set(items[i], items[i+1])
		}
		return u.pushNew(d)
	case 0x8f: // EMPTY_SET
		return u.pushNew(&pySet{})
	case 0x91: // FROZENSET
		items, err := u.popMark("FROZENSET")
		if err != nil {
			return err
		}
		return u.pushNew(&pySet{Items: items})

	case 'a', 'e': // APPEND, APPENDS
		var items []any
		var err error
		if op == 'a' {
			var v any
			v, err = u.pop("APPEND")
			items = []any{v}
		} else {
			items, err = u.popMark("APPENDS")
		}
		if err != nil {
			return err
		}
		target, err := u.top("APPEND")
		if err != nil {
			return err
		}
		switch t := target.(type) {
		case *pyList:
			t.Items = append(t.Items, items...)
		case *pyObject:
			t.List = append(t.List, items...)
		case *pySet:
			t.Items = append(t.Items, items...)
		default:
			return u.errorf(ErrMalformed, "APPEND to a %s, which is not a list", typeName(target))
		}
	case 's', 'u': // SETITEM, SETITEMS
		var items []any
		if op == 's' {
			v, err := u.pop("SETITEM")
			if err != nil {
				return err
			}
			k, err := u.pop("SETITEM")
			if err != nil {
				return err
			}
			items = []any{k, v}
		} else {
			var err error
			items, err = u.popMark("SETITEMS")
			if err != nil {
				return err
			}
			if len(items)%2 != 0 {
				return u.errorf(ErrMalformed, "SETITEMS has an odd number of items (%d)", len(items))
			}
		}
		target, err := u.top("SETITEM")
		if err != nil {
			return err
		}
		var d *pyDict
		switch t := target.(type) {
		case *pyDict:
			d = t
		case *pyObject:
			if t.Items == nil {
				t.Items = newDict(nil)
			}
			d = t.Items
		default:
			return u.errorf(ErrMalformed, "SETITEM on a %s, which is not a dict", typeName(target))
		}
		for i := 0; i < len(items); i += 2 {
			d.Set(items[i], items[i+1])
		}
	case 0x90: // ADDITEMS
		items, err := u.popMark("ADDITEMS")
		if err != nil {
			return err
		}
		target, err := u.top("ADDITEMS")
		if err != nil {
			return err
		}
		s, ok := target.(*pySet)
		if !ok {
			return u.errorf(ErrMalformed, "ADDITEMS on a %s, which is not a set", typeName(target))
		}
		s.Items = append(s.Items, items...)

	case 'p': // PUT
		line, err := u.readLine("PUT")
		if err != nil {
			return err
		}
		i, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return u.errorf(ErrMalformed, "PUT index %q is not a number", truncateText(line))
		}
		return u.memoPut(i)
	case 'q':
		i, err := u.readUint(1, "BINPUT")
		if err != nil {
			return err
		}
		return u.memoPut(int64(i))
	case 'r':
		i, err := u.readUint(4, "LONG_BINPUT")
		if err != nil {
			return err
		}
		return u.memoPut(int64(i))
	case 0x94: // MEMOIZE
		return u.memoPut(int64(len(u.memo)))
	case 'g': // GET
		line, err := u.readLine("GET")
		if err != nil {
			return err
		}
		i, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return u.errorf(ErrMalformed, "GET index %q is not a number", truncateText(line))
		}
		return u.memoGet(i)
	case 'h':
		i, err := u.readUint(1, "BINGET")
		if err != nil {
			return err
		}
		return u.memoGet(int64(i))
	case 'j':
		i, err := u.readUint(4, "LONG_BINGET")
		if err != nil {
			return err
		}
		return u.memoGet(int64(i))

	case 'c': // GLOBAL
		module, err := u.readLine("GLOBAL")
		if err != nil {
			return err
		}
		name, err := u.readLine("GLOBAL")
		if err != nil {
			return err
		}
		return u.pushNew(u.global(module, name))
	case 0x93: // STACK_GLOBAL
		name, err := u.pop("STACK_GLOBAL")
		if err != nil {
			return err
		}
		module, err := u.pop("STACK_GLOBAL")
		if err != nil {
			return err
		}
		m, ok1 := module.(string)
		n, ok2 := name.(string)
		if !ok1 || !ok2 {
			return u.errorf(ErrMalformed, "STACK_GLOBAL needs two strings, got %s and %s", typeName(module), typeName(name))
		}
		return u.pushNew(u.global(m, n))
	case 0x82, 0x83, 0x84: // EXT1, EXT2, EXT4
		return u.errorf(ErrMalformed, "pickle uses the copyreg extension registry (EXT opcodes), which torch.save never emits")

	case 'R': // REDUCE
		args, err := u.pop("REDUCE")
		if err != nil {
			return err
		}
		callable, err := u.pop("REDUCE")
		if err != nil {
			return err
		}
		t, ok := args.(pyTuple)
		if !ok {
			return u.errorf(ErrMalformed, "REDUCE arguments are a %s, not a tuple", typeName(args))
		}
		v, err := u.reduce(callable, t)
		if err != nil {
			return err
		}
		return u.pushNew(v)
	case 0x81: // NEWOBJ
		args, err := u.pop("NEWOBJ")
		if err != nil {
			return err
		}
		cls, err := u.pop("NEWOBJ")
		if err != nil {
			return err
		}
		t, _ := args.(pyTuple)
		return u.pushNew(u.newObject(cls, t, nil))
	case 0x92: // NEWOBJ_EX
		kwargs, err := u.pop("NEWOBJ_EX")
		if err != nil {
			return err
		}
		args, err := u.pop("NEWOBJ_EX")
		if err != nil {
			return err
		}
		cls, err := u.pop("NEWOBJ_EX")
		if err != nil {
			return err
		}
		t, _ := args.(pyTuple)
		return u.pushNew(u.newObject(cls, t, kwargs))
	case 'o': // OBJ
		items, err := u.popMark("OBJ")
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return u.errorf(ErrMalformed, "OBJ without a class")
		}
		return u.pushNew(u.newObject(items[0], items[1:], nil))
	case 'i': // INST
		module, err := u.readLine("INST")
		if err != nil {
			return err
		}
		name, err := u.readLine("INST")
		if err != nil {
			return err
		}
		items, err := u.popMark("INST")
		if err != nil {
			return err
		}
		return u.pushNew(u.newObject(u.global(module, name), items, nil))
	case 'b': // BUILD
		state, err := u.pop("BUILD")
		if err != nil {
			return err
		}
		target, err := u.top("BUILD")
		if err != nil {
			return err
		}
		build(target, state)

	case 'P', 'Q': // PERSID, BINPERSID
		var pid any
		if op == 'P' {
			line, err := u.readLine("PERSID")
			if err != nil {
				return err
			}
			pid = line
		} else {
			var err error
			if pid, err = u.pop("BINPERSID"); err != nil {
				return err
			}
		}
		if u.persistentLoad == nil {
			return u.errorf(ErrMalformed, "pickle refers to an external object (persistent id) where none is allowed")
		}
		v, err := u.persistentLoad(pid)
		if err != nil {
			if fe, ok := err.(*FormatError); ok && fe.Offset < 0 {
				fe.Offset = u.base + u.opStart
				if fe.Record == "" {
					fe.Record = u.record
				}
			}
			return err
		}
		return u.pushNew(v)
	case 0x97, 0x98: // NEXT_BUFFER, READONLY_BUFFER
		if op == 0x97 {
			return u.errorf(ErrMalformed, "pickle needs an out-of-band buffer (protocol 5), which torch.save never uses")
		}
		_, err := u.top("READONLY_BUFFER")
		return err
	default:
		return u.errorf(ErrMalformed, "invalid pickle opcode 0x%02x; the file is damaged or not a checkpoint", op)
	}
	return nil
}

// sized handles the opcodes followed by a length and that many bytes.
func (u *unpickler) sized(op byte) error {
	var width int
	var name string
	switch op {
	case 'U':
		width, name = 1, "SHORT_BINSTRING"
	case 'T':
		width, name = 4, "BINSTRING"
	case 0x8c:
		width, name = 1, "SHORT_BINUNICODE"
	case 'X':
		width, name = 4, "BINUNICODE"
	case 0x8d:
		width, name = 8, "BINUNICODE8"
	case 'C':
		width, name = 1, "SHORT_BINBYTES"
	case 'B':
		width, name = 4, "BINBYTES"
	case 0x8e:
		width, name = 8, "BINBYTES8"
	case 0x96:
		width, name = 8, "BYTEARRAY8"
	}
	n, err := u.readUint(width, name)
	if err != nil {
		return err
	}
	if op == 'T' && int32(uint32(n)) < 0 {
		return u.errorf(ErrMalformed, "BINSTRING has negative length %d", int32(uint32(n)))
	}
	if n > uint64(u.remaining()) {
		return u.errorf(ErrDeclaredSize, "%s declares %d bytes but only %d remain in the pickle; the file is damaged or not a checkpoint", name, n, u.remaining())
	}
	b, err := u.read(int64(n), name)
	if err != nil {
		return err
	}
	switch op {
	case 'U', 'T':
		// Python 2 str: torch reads it as latin-1 text.
		return u.pushNew(latin1(b))
	case 0x8c, 'X', 0x8d:
		if !utf8.Valid(b) {
			// CPython accepts surrogates via surrogatepass; keep the text
			// readable rather than failing the whole file.
			return u.pushNew(strings.ToValidUTF8(string(b), "\uFFFD"))
		}
		return u.pushNew(string(b))
	}
	return u.pushNew(b)
}

// textNumber handles the protocol 0 INT, LONG and FLOAT opcodes.
func (u *unpickler) textNumber(op byte) error {
	line, err := u.readLine("INT")
	if err != nil {
		return err
	}
	if len(line) > maxTextNumber {
		return u.errorf(ErrDeclaredSize, "text number of %d digits exceeds the limit of %d", len(line), maxTextNumber)
	}
	switch op {
	case 'F':
		f, err := strconv.ParseFloat(line, 64)
		if err != nil {
			return u.errorf(ErrMalformed, "FLOAT %q is not a number", truncateText(line))
		}
		return u.push(f)
	case 'I':
		switch line {
		case "00":
			return u.push(false)
		case "01":
			return u.push(true)
		}
	case 'L':
		line = strings.TrimSuffix(line, "L")
	}
	if i, err := strconv.ParseInt(line, 10, 64); err == nil {
		return u.push(i)
	}
	b, ok := new(big.Int).SetString(line, 10)
	if !ok {
		return u.errorf(ErrMalformed, "INT %q is not a number", truncateText(line))
	}
	return u.pushNew(b)
}

func (u *unpickler) memoPut(i int64) error {
	if i < 0 {
		return u.errorf(ErrMalformed, "negative memo index %d", i)
	}
	v, err := u.top("PUT")
	if err != nil {
		return err
	}
	if _, ok := u.memo[i]; !ok {
		u.values++
		if u.values > maxValues {
			return u.errorf(ErrDeclaredSize, "pickle creates more than %d values; the file is not a checkpoint", maxValues)
		}
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) memoGet(i int64) error {
	v, ok := u.memo[i]
	if !ok {
		return u.errorf(ErrMalformed, "memo index %d was never stored", i)
	}
	return u.push(v)
}

// newObject builds the inert instance that NEWOBJ, OBJ or INST creates.
func (u *unpickler) newObject(cls any, args []any, kwargs any) any {
	if g, ok := cls.(*pyGlobal); ok {
		switch g.FullName() {
		case "collections.OrderedDict", "builtins.dict", "__builtin__.dict", "collections.defaultdict":
			return newDict(g)
		case "builtins.set", "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset":
			return &pySet{}
		case "builtins.list", "__builtin__.list":
			return &pyList{}
		}
	}
	return &pyObject{Class: cls, Args: args, Kwargs: kwargs}
}

// build applies BUILD's state to target. Only objects and dicts keep it;
// BUILD on anything else is ignored because nothing is ever executed.
func build(target, state any) {
	switch t := target.(type) {
	case *pyObject:
		if old, ok := t.State.(*pyDict); ok {
			if d, ok := state.(*pyDict); ok && old != d {
				for i, k := range d.Keys {
					old.Set(k, d.Values[i])
				}
				return
			}
		}
		t.State = state
	case *pyDict:
		t.State = state
	}
}

// decodeLong decodes a little-endian two's-complement integer.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		shift := uint(64 - 8*len(b))
		return int64(v<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	v := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if v.IsInt64() {
		return v.Int64()
	}
	return v
}

// latin1 decodes bytes as ISO 8859-1.
func latin1(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// unquoteString decodes the Python repr that the protocol 0 STRING opcode
// carries, such as 'abc' or "it's", with backslash escapes.
func unquoteString(s string) (string, error) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", fmt.Errorf("missing quotes")
	}
	s = s[1 : len(s)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case '\\', '\'', '"':
			out = append(out, s[i])
		case 'x':
			if i+2 < len(s) {
				v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
				if err == nil {
					out = append(out, byte(v))
					i += 2
					continue
				}
			}
			out = append(out, '\\', 'x')
		default:
			out = append(out, '\\', s[i])
		}
	}
	return latin1(out), nil
}

// decodeRawUnicodeEscape decodes Python's raw-unicode-escape encoding used
// by the protocol 0 UNICODE opcode: \uXXXX and \UXXXXXXXX escapes, other
// bytes as latin-1.
func decodeRawUnicodeEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			n := 4
			if s[i+1] == 'U' {
				n = 8
			}
			if i+2+n <= len(s) {
				if v, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32); err == nil && v <= utf8.MaxRune {
					b.WriteRune(rune(v))
					i += 1 + n
					continue
				}
			}
		}
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// truncateText shortens text quoted in an error message.
func truncateText(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// typeName names the Python type of an unpickled value in error messages.
// It never formats the value itself, which may be huge or cyclic.
func typeName(v any) string {
	switch t := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pySet:
		return "set"
	case *pyDict:
		return "dict"
	case *pyGlobal:
		return "global " + truncateText(t.FullName())
	case *pyObject:
		if n := t.ClassName(); n != "" {
			return truncateText(n) + " object"
		}
		return "object"
	case *Tensor:
		return "tensor"
	case *Storage:
		return "storage"
	case *quantizedTensor:
		return "quantized tensor"
	}
	return fmt.Sprintf("%T", v)
}
