// A check of the Go SDK's WASI adapter (../adapter/preview1.wat), not an
// example: it sleeps, reads both clocks and random bytes, writes to stdout
// and stderr, and with the arg `"panic": true` panics on its first attempt.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"acidic.example/acidic"
)

func init() { acidic.Handle(check) }

func check(cx *acidic.Ctx) (acidic.Outcome, error) {
	var args struct {
		Panic bool `json:"panic"`
	}
	if err := cx.Args(&args); err != nil {
		return acidic.Continue, err
	}
	start := time.Now()
	time.Sleep(50 * time.Millisecond)
	slept := time.Since(start)
	b := make([]byte, 13)
	if _, err := rand.Read(b); err != nil {
		return acidic.Continue, err
	}
	fmt.Println("adapter check: to stdout")
	fmt.Fprintln(os.Stderr, "adapter check: to stderr")
	if args.Panic && cx.Attempt == 1 {
		panic("deliberate")
	}
	return acidic.Finish(map[string]any{
		"slept_ms": slept.Milliseconds(),
		"year":     start.Year(),
		"random":   hex.EncodeToString(b),
		"home":     os.Getenv("HOME"),
	})
}

func main() {}
