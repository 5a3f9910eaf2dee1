"""The `{{name}}` workflow's steps. One component serves both: it looks at
`cx.step`. Everything a step does through `cx` commits with the step, or not
at all."""

import acidic


@acidic.step
def run(cx: acidic.Ctx):
    if cx.step == "greet":
        name = cx.arg("name")                    # the run's args (a missing one fails the run)
        if not name:
            raise acidic.Fatal("name is empty")  # fails the run, commits nothing
        cx.info(f"greeting {name}")              # kept with the step's record
        cx.set("greeting", f"hello, {name}")     # an attribute, committed with the step
        return None                              # the next step runs
    if cx.step == "finish":
        return cx.finish(cx.require("greeting"))  # the run's result
    raise acidic.Fatal(f"{{name}} has no step `{cx.step}`")
