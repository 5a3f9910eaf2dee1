// A check of the Go SDK's canonical-ABI glue, not an example: one step call
// makes `calls` host calls (default 100000) with empty, small and large
// strings, reads every answer back and compares it, so that garbage
// collection runs many times between calls and the arena is reused
// thousands of times. It finishes with what it did, or fails naming the
// first mismatch.
package main

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"acidic.example/acidic"
)

func init() { acidic.Handle(check) }

func check(cx *acidic.Ctx) (acidic.Outcome, error) {
	args := struct {
		Calls int `json:"calls"`
	}{Calls: 100000}
	if err := cx.Args(&args); err != nil {
		return acidic.Continue, err
	}
	calls := args.Calls
	large := strings.Repeat("acidic✓", 16<<10/8) // 16 KiB of multi-byte text
	var garbage [][]byte
	var bytes int
	for i := 0; i < calls; i += 2 {
		var value string
		switch i % 10 {
		case 0:
			value = large[:len(large)-i%7] // large, cut at varying byte offsets
			for !utf8.ValidString(value) {
				value = value[:len(value)-1]
			}
		case 2, 6:
			value = ""
		default:
			value = fmt.Sprint(i)
		}
		name := "k" + fmt.Sprint(i%3)
		if err := cx.Set(name, value); err != nil {
			return acidic.Continue, fmt.Errorf("call %d: set %q (%d bytes): %w", i, name, len(value), err)
		}
		var back string
		ok, err := cx.Get(name, &back)
		if err != nil || !ok || back != value {
			return acidic.Continue, acidic.Fatal("call %d: get %q gave %d bytes (set %t, %v), want %d", i+1, name, len(back), ok, err, len(value))
		}
		bytes += 2 * len(value)
		// Churn the Go heap so that the collector runs between host calls.
		garbage = append(garbage, make([]byte, 1024))
		if len(garbage) > 512 {
			garbage = garbage[:0]
		}
	}
	var missing string
	if ok, _ := cx.Get("never-set", &missing); ok {
		return acidic.Continue, acidic.Fatal("an unset attribute was found")
	}
	names := cx.AttributeNames()
	return acidic.Finish(map[string]any{"calls": calls, "bytes": bytes, "names": names})
}

func main() {}
