package acidic

// The canonical-ABI glue, written once: memory the host writes into, and
// lifting its strings and lists into Go values.
//
// The host allocates what it hands to the guest (the step's input, strings
// and lists returned by imports) through the exported `cabi_realloc`. That
// function must not allocate on the Go heap: an allocation can start garbage
// collection work, which may call WASI while the host is still inside
// `cabi_realloc`, and the component traps ("cannot leave component
// instance"). So it bumps a pointer through an arena: a static array in the
// module's data (there before the Go runtime starts), replaced by a larger
// Go-heap buffer through `Reserve` when a step expects big answers. The
// glue copies every answer into Go memory before the next call into the
// host, so the arena is reset before each one.

import "unsafe"

// The arena's default size: every answer of one host call (an attribute, a
// query's rows) must fit in it; `Reserve` makes it larger. The step's input
// arrives before any Go code can call `Reserve`: a Go step's args (the
// manifest's `max_input`) must stay under 4 MiB.
const defaultArena = 4 << 20

var (
	staticArena [defaultArena]byte
	arena       = staticArena[:]
	arenaUsed   uint32
	// How much memory one host call asked for at most: what `Reserve` needs.
	arenaPeak uint32
)

// Reserve makes sure one host call may hand back at least n bytes (the
// default is 4 MiB). Call it before a query whose rows may be larger.
func Reserve(n int) {
	if n > len(arena) {
		arena = make([]byte, n)
		arenaUsed = 0
	}
}

// resetArena forgets every earlier answer: call it only once they are copied.
func resetArena() { arenaUsed = 0 }

//go:nosplit
func arenaBase() uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(arena)))) }

// Nothing here may grow the stack or reach the scheduler: no calls but
// arenaBase, copying byte by byte.
//
//go:wasmexport cabi_realloc
//go:nosplit
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	if align == 0 || align&(align-1) != 0 {
		return outOfBounds
	}
	base := arenaBase()
	start := (base + arenaUsed + align - 1) &^ (align - 1)
	end := uint64(start) + uint64(newSize)
	if end > uint64(base)+uint64(len(arena)) {
		// Too big for the arena. Returning an address past the end of
		// memory makes the host stop the call with "realloc return: beyond
		// end of memory"; panicking here would itself trap less clearly.
		return outOfBounds
	}
	if oldPtr != 0 && oldSize > 0 {
		for i := range min(oldSize, newSize) {
			*(*byte)(unsafe.Pointer(uintptr(start + i))) = *(*byte)(unsafe.Pointer(uintptr(oldPtr + i)))
		}
	}
	arenaUsed = uint32(end) - base
	arenaPeak = max(arenaPeak, arenaUsed)
	return start
}

// An address no 32-bit memory reaches with anything after it.
const outOfBounds = 0xFFFF_FFF0

// The return area imports and the export write their results to.
var retArea [8]uint64

func ret() uint32 { return uint32(uintptr(unsafe.Pointer(&retArea[0]))) }

func retU8(off uintptr) uint8   { return *(*uint8)(unsafe.Add(unsafe.Pointer(&retArea[0]), off)) }
func retU32(off uintptr) uint32 { return *(*uint32)(unsafe.Add(unsafe.Pointer(&retArea[0]), off)) }
func retU64(off uintptr) uint64 { return *(*uint64)(unsafe.Add(unsafe.Pointer(&retArea[0]), off)) }

func setRetU8(off uintptr, v uint8) { *(*uint8)(unsafe.Add(unsafe.Pointer(&retArea[0]), off)) = v }
func setRetU32(off uintptr, v uint32) {
	*(*uint32)(unsafe.Add(unsafe.Pointer(&retArea[0]), off)) = v
}

// A string's address and length as the host reads them. An empty string
// may have a nil address; the host accepts that for length 0.
func strArgs(s string) (uint32, uint32) {
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))), uint32(len(s))
}

// liftString copies a string the host wrote into guest memory.
func liftString(ptr, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n))
}

// liftBytes copies a byte list the host wrote into guest memory.
func liftBytes(ptr, n uint32) []byte {
	out := make([]byte, n)
	if n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n))
	}
	return out
}

func load32(addr uint32) uint32 { return *(*uint32)(unsafe.Pointer(uintptr(addr))) }
func load64(addr uint32) uint64 { return *(*uint64)(unsafe.Pointer(uintptr(addr))) }
func load8(addr uint32) uint8   { return *(*uint8)(unsafe.Pointer(uintptr(addr))) }

// liftStringAt copies the string whose (address, length) pair is at addr.
func liftStringAt(addr uint32) string { return liftString(load32(addr), load32(addr+4)) }

// liftOptionStringAt copies an option<string> laid out at addr.
func liftOptionStringAt(addr uint32) (string, bool) {
	if load8(addr) == 0 {
		return "", false
	}
	return liftStringAt(addr + 4), true
}

// liftStrings copies a list<string>.
func liftStrings(ptr, n uint32) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = liftStringAt(ptr + 8*i)
	}
	return out
}
