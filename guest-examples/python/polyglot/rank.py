"""The polyglot workflow's third step, in Python: ranks the counts the JS
step left in `counts` and keeps the `top` ones (args: `top`, default 3).

With the arg `"fail_once": true` its first attempt fails with a retryable
error after setting an attribute: the failure the tests inject in the
middle of the workflow (nothing of the failed attempt is committed)."""

import acidic


@acidic.step
def run(cx: acidic.Ctx):
    counts = cx.require("counts")
    n = cx.arg("top", 3)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    cx.set("top", [[word, count] for word, count in ranked])
    if cx.arg("fail_once", False) and cx.attempt == 1:
        raise acidic.Retryable("injected failure in the Python step")
    cx.info(f"top {n}: {ranked}")
