// Rocket Rides' "create a ride" in Go: the same three steps, tables and
// behaviour as guest-examples/rust/ride-create. The charge is made locally
// (`ch_<step key>`): no HTTP client is wired into this SDK yet.
package main

import (
	"encoding/json"
	"fmt"
	"math"

	"acidic.example/acidic"
)

type ride struct {
	User   string     `json:"user"`
	Origin [2]float64 `json:"origin"`
	Target [2]float64 `json:"target"`
	Card   string     `json:"card"`
}

func init() { acidic.Handle(run) }

func run(cx *acidic.Ctx) (acidic.Outcome, error) {
	var r ride
	if err := cx.Args(&r); err != nil {
		return acidic.Continue, err
	}
	switch cx.Step {
	case "create_ride":
		return acidic.Continue, createRide(cx, &r)
	case "charge_card":
		return acidic.Continue, chargeCard(cx, &r)
	case "send_receipt":
		return sendReceipt(cx, &r)
	}
	return acidic.Continue, acidic.Fatal("ride-create has no step `%s`", cx.Step)
}

func createRide(cx *acidic.Ctx, r *ride) error {
	rideID := fmt.Sprintf("ride_%d", cx.RunID)
	amount := fareCents(r.Origin, r.Target)
	origin, _ := json.Marshal(r.Origin)
	target, _ := json.Marshal(r.Target)
	if _, err := cx.Execute(
		"INSERT INTO rides (id, run_key, user_email, origin, target, amount_cents) VALUES ($1, $2, $3, $4, $5, $6)",
		rideID, cx.Key, r.User, string(origin), string(target), amount,
	); err != nil {
		return err
	}
	if err := audit(cx, rideID, "created", "for "+r.User); err != nil {
		return err
	}
	if err := cx.Set("ride_id", rideID); err != nil {
		return err
	}
	if err := cx.Set("amount_cents", amount); err != nil {
		return err
	}
	cx.Info("created %s for %s", rideID, r.User)
	return nil
}

func audit(cx *acidic.Ctx, rideID, action, detail string) error {
	_, err := cx.Execute("INSERT INTO audit_records (ride_id, action, detail) VALUES ($1, $2, $3)", rideID, action, detail)
	return err
}

// Test cards: `tok_chargeDeclined` fails for good; with `tok_flaky` the first
// attempt's answer is lost after the charge went through, so the retry
// charges again with the same key (and gets the same charge).
func chargeCard(cx *acidic.Ctx, r *ride) error {
	var rideID string
	var amount int64
	if err := cx.Require("ride_id", &rideID); err != nil {
		return err
	}
	if err := cx.Require("amount_cents", &amount); err != nil {
		return err
	}
	if r.Card == "tok_chargeDeclined" {
		// Over HTTP the run answers 402 Payment Required (and replays it).
		cx.SetHTTPStatus(402)
		return acidic.Fatal("card declined")
	}
	chargeID := "ch_" + cx.StepKey
	if r.Card == "tok_flaky" && cx.Attempt == 1 {
		return acidic.Retryable("payment gateway timed out")
	}
	if _, err := cx.Execute("UPDATE rides SET charge_id = $1 WHERE id = $2", chargeID, rideID); err != nil {
		return err
	}
	if err := audit(cx, rideID, "charged", fmt.Sprintf("%d cents, %s", amount, chargeID)); err != nil {
		return err
	}
	if err := cx.Set("charge_id", chargeID); err != nil {
		return err
	}
	cx.Info("charged %d cents for %s", amount, rideID)
	return nil
}

func sendReceipt(cx *acidic.Ctx, r *ride) (acidic.Outcome, error) {
	var rideID, chargeID string
	var amount int64
	for name, v := range map[string]any{"ride_id": &rideID, "amount_cents": &amount, "charge_id": &chargeID} {
		if err := cx.Require(name, v); err != nil {
			return acidic.Continue, err
		}
	}
	key := "receipt-" + cx.Key
	receiptRun, err := cx.Enqueue(acidic.Job{
		Workflow: "send-receipt",
		Args:     map[string]any{"user": r.User, "ride_id": rideID, "amount_cents": amount},
		Key:      &key,
	})
	if err != nil {
		return acidic.Continue, err
	}
	return acidic.Finish(map[string]any{
		"ride_id": rideID, "charge_id": chargeID, "amount_cents": amount, "receipt_run": receiptRun,
	})
}

// A flat fee plus a rate per degree travelled.
func fareCents(origin, target [2]float64) int64 {
	distance := math.Hypot(target[0]-origin[0], target[1]-origin[1])
	return 200 + int64(math.Round(distance*1000))
}

func main() {}
