"""Rocket Rides' "create a ride" in Python: the same three steps, tables and
behaviour as guest-examples/rust/ride-create. The charge is made locally
(`ch_<step key>`): no HTTP client is wired into this SDK yet."""

import json
import math

import acidic


@acidic.step
def run(cx: acidic.Ctx):
    ride = cx.args
    if cx.step == "create_ride":
        return create_ride(cx, ride)
    if cx.step == "charge_card":
        return charge_card(cx, ride)
    if cx.step == "send_receipt":
        return send_receipt(cx, ride)
    raise acidic.Fatal(f"ride-create has no step `{cx.step}`")


def create_ride(cx, ride):
    ride_id = f"ride_{cx.run_id}"
    amount = fare_cents(ride["origin"], ride["target"])
    cx.execute(
        "INSERT INTO rides (id, run_key, user_email, origin, target, amount_cents) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [ride_id, cx.key, ride["user"], json.dumps(ride["origin"]), json.dumps(ride["target"]), amount],
    )
    audit(cx, ride_id, "created", f"for {ride['user']}")
    cx.set("ride_id", ride_id)
    cx.set("amount_cents", amount)
    cx.info(f"created {ride_id} for {ride['user']}")


def audit(cx, ride_id, action, detail):
    cx.execute(
        "INSERT INTO audit_records (ride_id, action, detail) VALUES ($1, $2, $3)",
        [ride_id, action, detail],
    )


# Test cards: `tok_chargeDeclined` fails for good; with `tok_flaky` the first
# attempt's answer is lost after the charge went through, so the retry charges
# again with the same key (and gets the same charge).
def charge_card(cx, ride):
    ride_id = cx.require("ride_id")
    amount = cx.require("amount_cents")
    if ride["card"] == "tok_chargeDeclined":
        # Over HTTP the run answers 402 Payment Required (and replays it).
        cx.set_http_status(402)
        raise acidic.Fatal("card declined")
    charge_id = f"ch_{cx.step_key}"
    if ride["card"] == "tok_flaky" and cx.attempt == 1:
        raise acidic.Retryable("payment gateway timed out")
    cx.execute("UPDATE rides SET charge_id = $1 WHERE id = $2", [charge_id, ride_id])
    audit(cx, ride_id, "charged", f"{amount} cents, {charge_id}")
    cx.set("charge_id", charge_id)
    cx.info(f"charged {amount} cents for {ride_id}")


def send_receipt(cx, ride):
    ride_id = cx.require("ride_id")
    amount = cx.require("amount_cents")
    charge_id = cx.require("charge_id")
    receipt = {"user": ride["user"], "ride_id": ride_id, "amount_cents": amount}
    receipt_run = cx.enqueue("send-receipt", receipt, key=f"receipt-{cx.key}")
    return cx.finish(
        {"ride_id": ride_id, "charge_id": charge_id, "amount_cents": amount, "receipt_run": receipt_run}
    )


def fare_cents(origin, target):
    """A flat fee plus a rate per degree travelled."""
    distance = math.hypot(target[0] - origin[0], target[1] - origin[1])
    return 200 + math.floor(distance * 1000 + 0.5)  # half away from zero, as in Rust
