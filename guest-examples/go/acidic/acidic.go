// Package acidic is the SDK for Go steps: a step is a function of a context.
//
//	package main
//
//	import "acidic.example/acidic"
//
//	func init() { acidic.Handle(greet) }
//
//	func greet(cx *acidic.Ctx) (acidic.Outcome, error) {
//		var name string
//		if err := cx.Arg("name", &name); err != nil { // the run's args
//			return acidic.Continue, err
//		}
//		var n int
//		cx.Get("greetings", &n)                         // a persisted attribute
//		if err := cx.Set("greetings", n+1); err != nil { // committed with the step
//			return acidic.Continue, err
//		}
//		if name == "" {
//			return acidic.Continue, acidic.Fatal("name is empty") // fails the run
//		}
//		return acidic.Finish("hello, " + name) // or acidic.Continue, nil
//	}
//
//	func main() {}
//
// Use the SDK from the step's own goroutine: its buffers are not shared
// safely between goroutines.
//
// Args, attributes and results are Go values marshalled as JSON. An error
// made by Fatal fails the run at once; any other error (and a panic) is
// retryable: the step's retry policy applies. Built for GOOS=wasip1 as a
// reactor (`-buildmode=c-shared`), then made a component with the adapter
// in ../adapter (see the Makefile).
package acidic

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
)

// A StepError fails the step: nothing it did is committed.
type StepError struct {
	Message string
	// Retryable errors are retried per the step's policy; others fail the run.
	Retryable bool
}

func (e *StepError) Error() string {
	if e == nil {
		return "step error"
	}
	return e.Message
}

// errorText is err's message; a nil *StepError inside an error is not a crash.
func errorText(err error) (msg string) {
	defer func() {
		if recover() != nil {
			msg = fmt.Sprintf("%T", err)
		}
	}()
	return err.Error()
}

// validText makes s valid UTF-8, which every string the host reads must be.
func validText(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// Fatal is an error that fails the run now.
func Fatal(format string, a ...any) error {
	return &StepError{Message: fmt.Sprintf(format, a...), Retryable: false}
}

// Retryable is an error the step's retry policy retries.
func Retryable(format string, a ...any) error {
	return &StepError{Message: fmt.Sprintf(format, a...), Retryable: true}
}

// Outcome is what the run does after the step commits.
type Outcome struct {
	kind   uint8
	result string
}

var (
	// Continue moves on to the next step.
	Continue = Outcome{kind: 0}
	// Repeat commits the step's effects and runs the same step again.
	Repeat = Outcome{kind: 2}
)

// Finish ends the run now with result (any JSON-marshalable value).
func Finish(result any) (Outcome, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return Continue, Fatal("the result is not JSON: %v", err)
	}
	return Outcome{kind: 1, result: string(b)}, nil
}

// A Job is a run to stage from a step: it exists only if the step commits.
type Job struct {
	Workflow string
	Args     any
	// Key is the staged run's idempotency key; nil derives one from workflow and args.
	Key *string
	// DelayMs delays the run after the step commits.
	DelayMs *uint64
	// Queue is the queue workers claim it from; nil is "default".
	Queue *string
	// Awaits makes the run move past this step only once the job succeeded.
	Awaits bool
}

// A Child is a run this run staged.
type Child struct {
	Workflow, Key, Status string
	// Output is its JSON result, once it succeeded.
	Output json.RawMessage
}

// Rows is what a query returned. Values are nil, int64, float64, string,
// []byte or RawJSON.
type Rows struct {
	Columns []string
	Rows    [][]any
}

// RawJSON is a JSON value read from or bound to SQL (jsonb on Postgres).
type RawJSON string

// Ctx is what a step sees: its input, the run's args and attributes,
// staging, SQL on the application's tables, logging.
type Ctx struct {
	// RunID is the run's numeric id.
	RunID uint64
	// Key is the run's idempotency key.
	Key string
	// Workflow is the workflow's name and WorkflowVersion its registered revision.
	Workflow        string
	WorkflowVersion uint32
	// Step is the step being run.
	Step string
	// Attempt is this step's attempt, from 1.
	Attempt uint32
	// ArgsJSON is the run's args as JSON text.
	ArgsJSON string
	// StepKey is stable across retries of this step: the idempotency key for external APIs.
	StepKey string
}

// Args unmarshals the run's args into v.
func (cx *Ctx) Args(v any) error {
	if err := json.Unmarshal([]byte(cx.ArgsJSON), v); err != nil {
		return Fatal("the run's args: %v", err)
	}
	return nil
}

// Arg unmarshals the run's arg `name` into v; a missing arg fails the run.
func (cx *Ctx) Arg(name string, v any) error {
	var args map[string]json.RawMessage
	if err := json.Unmarshal([]byte(cx.ArgsJSON), &args); err != nil {
		return Fatal("the run's args are not a JSON object: %v", err)
	}
	raw, ok := args[name]
	if !ok {
		return Fatal("missing arg `%s`", name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return Fatal("arg `%s`: %v", name, err)
	}
	return nil
}

// Get unmarshals attribute `name` into v; it reports whether it was set.
func (cx *Ctx) Get(name string, v any) (bool, error) {
	text, ok := hostGet(name)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal([]byte(text), v); err != nil {
		return true, Fatal("attribute `%s`: %v", name, err)
	}
	return true, nil
}

// Require unmarshals attribute `name` into v; an unset attribute fails the run.
func (cx *Ctx) Require(name string, v any) error {
	ok, err := cx.Get(name, v)
	if err == nil && !ok {
		return Fatal("attribute `%s` is not set", name)
	}
	return err
}

// Set sets attribute `name` to v; committed with the step.
func (cx *Ctx) Set(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return Fatal("attribute `%s`: %v", name, err)
	}
	if msg, ok := hostSet(name, string(b)); !ok {
		return Fatal("attribute `%s`: %s", name, msg)
	}
	return nil
}

// Delete removes attribute `name`.
func (cx *Ctx) Delete(name string) { hostDelete(name) }

// AttributeNames lists the run's attributes, sorted.
func (cx *Ctx) AttributeNames() []string { return hostNames() }

// Enqueue stages job; it returns the staged run's idempotency key.
func (cx *Ctx) Enqueue(job Job) (string, error) {
	args, err := json.Marshal(job.Args)
	if err != nil {
		return "", Fatal("enqueue %s: args: %v", job.Workflow, err)
	}
	answer, ok := hostEnqueue(&job, string(args))
	if !ok {
		return "", Fatal("enqueue %s: %s", job.Workflow, answer)
	}
	return answer, nil
}

// Children lists the runs this run staged, oldest first.
func (cx *Ctx) Children() []Child { return hostChildren() }

// Execute runs one INSERT, UPDATE or DELETE in the step's transaction and
// returns the number of rows it changed. Params are nil, integers, floats,
// bools, strings, []byte, RawJSON, or anything else (bound as JSON).
func (cx *Ctx) Execute(stmt string, params ...any) (uint64, error) {
	return hostExecute(stmt, params)
}

// Query runs one SELECT in the step's transaction.
func (cx *Ctx) Query(stmt string, params ...any) (*Rows, error) {
	return hostQuery(stmt, params)
}

// Log levels.
const (
	Trace uint32 = iota
	Debug
	Info
	Warn
	Error
)

// Log writes a line to the host's log, tagged with the run and step.
func (cx *Ctx) Log(level uint32, format string, a ...any) {
	hostLog(min(level, Error), validText(fmt.Sprintf(format, a...)))
}

// Info writes an info line.
func (cx *Ctx) Info(format string, a ...any) { cx.Log(Info, format, a...) }

// SetHTTPStatus sets the HTTP status `acidic serve` answers this run's
// request with, if this step commits (a finished run's default is 201) or
// fails the run for good (default 500): 402 for a declined card, say. 200 to 599.
func (cx *Ctx) SetHTTPStatus(status uint16) { hostSetHttpStatus(status) }

// A Handler runs one step.
type Handler func(cx *Ctx) (Outcome, error)

var handler Handler

// Handle makes h the component's step. Call it from an init function.
func Handle(h Handler) { handler = h }

func call(cx *Ctx) (out Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &StepError{Message: fmt.Sprintf("panic: %v\n%s", p, debug.Stack()), Retryable: true}
		}
	}()
	if handler == nil {
		return Continue, Fatal("no step handler: call acidic.Handle from an init function")
	}
	return handler(cx)
}

// The answer of `run` must stay where the host reads it until it has.
var answer struct {
	message string
	result  string
}

//go:wasmexport run
func run(runID int64, keyPtr, keyLen, wfPtr, wfLen, version, stepPtr, stepLen, attempt, argsPtr, argsLen, skPtr, skLen uint32) uint32 {
	// Copy the input out of the arena before anything calls the host.
	cx := &Ctx{
		RunID:           uint64(runID),
		Key:             liftString(keyPtr, keyLen),
		Workflow:        liftString(wfPtr, wfLen),
		WorkflowVersion: version,
		Step:            liftString(stepPtr, stepLen),
		Attempt:         attempt,
		ArgsJSON:        liftString(argsPtr, argsLen),
		StepKey:         liftString(skPtr, skLen),
	}
	resetArena()
	out, err := call(cx)
	retArea = [8]uint64{}
	if err != nil {
		// The whole message (wrapping included); retryable unless a
		// StepError in the chain says otherwise.
		retryable := true
		var se *StepError
		if errors.As(err, &se) && se != nil {
			retryable = se.Retryable
		}
		answer.message = validText(errorText(err))
		p, n := strArgs(answer.message)
		setRetU8(0, 1)
		setRetU32(4, p)
		setRetU32(8, n)
		if retryable {
			setRetU8(12, 1)
		}
		return ret()
	}
	answer.result = out.result
	setRetU8(4, out.kind)
	if out.kind == 1 {
		p, n := strArgs(answer.result)
		setRetU32(8, p)
		setRetU32(12, n)
	}
	return ret()
}

//go:wasmexport cabi_post_run
func cabiPostRun(uint32) {
	answer.message, answer.result = "", ""
	resetArena()
}
