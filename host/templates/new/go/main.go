// The `{{name}}` workflow's steps. One component serves both: it looks at
// cx.Step. Everything a step does through cx commits with the step, or not
// at all.
package main

import "acidic.example/acidic"

func init() { acidic.Handle(run) }

func run(cx *acidic.Ctx) (acidic.Outcome, error) {
	switch cx.Step {
	case "greet":
		var name string
		if err := cx.Arg("name", &name); err != nil { // the run's args (a missing one fails the run)
			return acidic.Continue, err
		}
		if name == "" {
			return acidic.Continue, acidic.Fatal("name is empty") // fails the run, commits nothing
		}
		cx.Info("greeting %s", name)                               // kept with the step's record
		if err := cx.Set("greeting", "hello, "+name); err != nil { // an attribute, committed with the step
			return acidic.Continue, err
		}
		return acidic.Continue, nil // the next step runs
	case "finish":
		var greeting string
		if err := cx.Require("greeting", &greeting); err != nil { // what greet committed
			return acidic.Continue, err
		}
		return acidic.Finish(greeting) // the run's result
	default:
		return acidic.Continue, acidic.Fatal("{{name}} has no step `%s`", cx.Step)
	}
}

// main stays empty: the component's export calls the handler registered in init.
func main() {}
