// The polyglot workflow's fourth step, in Go: summarises the counts and the
// ranking, and stages a `polyglot-notify` run that exists only if this step
// commits.
package main

import "acidic.example/acidic"

func init() { acidic.Handle(summarize) }

func summarize(cx *acidic.Ctx) (acidic.Outcome, error) {
	var counts map[string]int
	var top [][2]any
	if err := cx.Require("counts", &counts); err != nil {
		return acidic.Continue, err
	}
	if err := cx.Require("top", &top); err != nil {
		return acidic.Continue, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	summary := map[string]any{"distinct": len(counts), "total": total, "top_word": top[0][0]}
	if err := cx.Set("summary", summary); err != nil {
		return acidic.Continue, err
	}
	key := "notify-" + cx.Key
	notify, err := cx.Enqueue(acidic.Job{Workflow: "polyglot-notify", Args: summary, Key: &key})
	if err != nil {
		return acidic.Continue, err
	}
	if err := cx.Set("notify_run", notify); err != nil {
		return acidic.Continue, err
	}
	cx.Info("%d words, %d distinct; staged %s", total, len(counts), notify)
	return acidic.Continue, nil
}

func main() {}
