package acidic

// The host's functions (WIT `acidic:step@0.3.0`), in their canonical-ABI
// core signatures, and wrappers that lower Go values and lift the answers.

import (
	"math"
	"runtime"
	"unsafe"
)

//go:wasmimport acidic:step/context@0.3.0 log
func importLog(level, ptr, n uint32)

//go:wasmimport acidic:step/context@0.3.0 set-http-status
func importSetHttpStatus(status uint32)

//go:wasmimport acidic:step/attributes@0.3.0 get
func importGet(ptr, n, ret uint32)

//go:wasmimport acidic:step/attributes@0.3.0 set
func importSet(namePtr, nameLen, valuePtr, valueLen, ret uint32)

//go:wasmimport acidic:step/attributes@0.3.0 delete
func importDelete(ptr, n uint32)

//go:wasmimport acidic:step/attributes@0.3.0 names
func importNames(ret uint32)

//go:wasmimport acidic:step/staging@0.3.0 enqueue
func importEnqueue(wfPtr, wfLen, argsPtr, argsLen, hasKey, keyPtr, keyLen, hasDelay uint32, delay uint64, hasQueue, queuePtr, queueLen, awaits, ret uint32)

//go:wasmimport acidic:step/staging@0.3.0 children
func importChildren(ret uint32)

//go:wasmimport acidic:step/sql@0.3.0 execute
func importExecute(stmtPtr, stmtLen, paramsPtr, paramsLen, ret uint32)

//go:wasmimport acidic:step/sql@0.3.0 query
func importQuery(stmtPtr, stmtLen, paramsPtr, paramsLen, ret uint32)

func hostLog(level uint32, msg string) {
	resetArena()
	p, n := strArgs(msg)
	importLog(level, p, n)
	runtime.KeepAlive(msg)
}

func hostSetHttpStatus(status uint16) {
	importSetHttpStatus(uint32(status))
}

func hostGet(name string) (string, bool) {
	name = validText(name)
	resetArena()
	p, n := strArgs(name)
	importGet(p, n, ret())
	runtime.KeepAlive(name)
	return liftOptionStringAt(ret())
}

func hostSet(name, value string) (string, bool) {
	name = validText(name)
	resetArena()
	np, nn := strArgs(name)
	vp, vn := strArgs(value)
	importSet(np, nn, vp, vn, ret())
	runtime.KeepAlive(name)
	runtime.KeepAlive(value)
	if retU8(0) == 0 {
		return "", true
	}
	return liftStringAt(ret() + 4), false
}

func hostDelete(name string) {
	name = validText(name)
	resetArena()
	p, n := strArgs(name)
	importDelete(p, n)
	runtime.KeepAlive(name)
}

func hostNames() []string {
	resetArena()
	importNames(ret())
	return liftStrings(retU32(0), retU32(4))
}

func optString(s *string) (uint32, uint32, uint32) {
	if s == nil {
		return 0, 0, 0
	}
	p, n := strArgs(*s)
	return 1, p, n
}

func validOpt(s *string) *string {
	if s == nil {
		return nil
	}
	v := validText(*s)
	return &v
}

func hostEnqueue(job *Job, args string) (string, bool) {
	j := &Job{Workflow: validText(job.Workflow), Key: validOpt(job.Key), Queue: validOpt(job.Queue),
		DelayMs: job.DelayMs, Awaits: job.Awaits}
	resetArena()
	wp, wn := strArgs(j.Workflow)
	ap, an := strArgs(args)
	hasKey, kp, kn := optString(j.Key)
	hasQueue, qp, qn := optString(j.Queue)
	var hasDelay uint32
	var delay uint64
	if j.DelayMs != nil {
		hasDelay, delay = 1, *j.DelayMs
	}
	var awaits uint32
	if j.Awaits {
		awaits = 1
	}
	importEnqueue(wp, wn, ap, an, hasKey, kp, kn, hasDelay, delay, hasQueue, qp, qn, awaits, ret())
	runtime.KeepAlive(j)
	runtime.KeepAlive(args)
	answer := liftStringAt(ret() + 4)
	return answer, retU8(0) == 0
}

// child record: workflow @0, key @8, status @16, option<string> output @24; 36 bytes.
func hostChildren() []Child {
	resetArena()
	importChildren(ret())
	ptr, n := retU32(0), retU32(4)
	out := make([]Child, n)
	for i := range n {
		at := ptr + 36*i
		out[i] = Child{Workflow: liftStringAt(at), Key: liftStringAt(at + 8), Status: liftStringAt(at + 16)}
		if s, ok := liftOptionStringAt(at + 24); ok {
			out[i].Output = []byte(s)
		}
	}
	return out
}

// A lowered `value`: discriminant u8 @0, payload @8; 16 bytes, aligned 8.
type loweredValue struct {
	tag     uint8
	_       [7]byte
	payload uint64
}

// lowerValues writes params as a list<value>; the strings and byte slices
// they point to are returned, to be kept alive until the call returns.
func lowerValues(params []any) ([]loweredValue, []any, error) {
	out := make([]loweredValue, len(params))
	held := make([]any, 0, len(params))
	for i, p := range params {
		v, err := sqlValueOf(p)
		if err != nil {
			return nil, nil, err
		}
		out[i].tag = v.tag
		switch v.tag {
		case tagInteger:
			out[i].payload = uint64(v.i)
		case tagReal:
			out[i].payload = math.Float64bits(v.f)
		case tagText, tagJSON:
			ptr, n := strArgs(v.s)
			out[i].payload = uint64(ptr) | uint64(n)<<32
			held = append(held, v.s)
		case tagBlob:
			ptr := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(v.b))))
			out[i].payload = uint64(ptr) | uint64(len(v.b))<<32
			held = append(held, v.b)
		}
	}
	return out, held, nil
}

func sliceArgs(vs []loweredValue) (uint32, uint32) {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(vs)))), uint32(len(vs))
}

// liftValue copies the `value` at addr.
func liftValue(addr uint32) any {
	switch load8(addr) {
	case tagInteger:
		return int64(load64(addr + 8))
	case tagReal:
		return math.Float64frombits(load64(addr + 8))
	case tagText:
		return liftStringAt(addr + 8)
	case tagBlob:
		return liftBytes(load32(addr+8), load32(addr+12))
	case tagJSON:
		return RawJSON(liftStringAt(addr + 8))
	default:
		return nil
	}
}

// sqlErrorAt lifts the sql-error at addr: refused(string) is 0, failed(string) 1.
func sqlErrorAt(addr uint32) error {
	msg := liftStringAt(addr + 4)
	if load8(addr) == 0 {
		return &StepError{Message: "sql refused: " + msg, Retryable: false}
	}
	return &StepError{Message: "sql failed: " + msg, Retryable: true}
}

// callSQL lowers a statement and its parameters and calls `execute` or
// `query` with them; the answer is in the return area.
func callSQL(call func(stmtPtr, stmtLen, paramsPtr, paramsLen, ret uint32), stmt string, params []any) error {
	vals, held, err := lowerValues(params)
	if err != nil {
		return err
	}
	resetArena()
	sp, sn := strArgs(stmt)
	pp, pn := sliceArgs(vals)
	call(sp, sn, pp, pn, ret())
	runtime.KeepAlive(stmt)
	runtime.KeepAlive(vals)
	runtime.KeepAlive(held)
	return nil
}

// result<u64, sql-error>: discriminant @0, u64 @8 or sql-error @8.
func hostExecute(stmt string, params []any) (uint64, error) {
	if err := callSQL(importExecute, validText(stmt), params); err != nil {
		return 0, err
	}
	if retU8(0) != 0 {
		return 0, sqlErrorAt(ret() + 8)
	}
	return retU64(8), nil
}

// result<rows, sql-error>: discriminant @0; rows {columns @4, rows @12} or sql-error @4.
func hostQuery(stmt string, params []any) (*Rows, error) {
	if err := callSQL(importQuery, validText(stmt), params); err != nil {
		return nil, err
	}
	if retU8(0) != 0 {
		return nil, sqlErrorAt(ret() + 4)
	}
	rows := &Rows{Columns: liftStrings(retU32(4), retU32(8))}
	rowsPtr, nrows := retU32(12), retU32(16)
	rows.Rows = make([][]any, nrows)
	for r := range nrows {
		ptr, n := load32(rowsPtr+8*r), load32(rowsPtr+8*r+4)
		row := make([]any, n)
		for c := range n {
			row[c] = liftValue(ptr + 16*c)
		}
		rows.Rows[r] = row
	}
	return rows, nil
}
