// Rocket Rides' "create a ride" in JavaScript: the same three steps, the
// same tables and the same behaviour as guest-examples/rust/ride-create.
// The charge is made locally (`ch_<step key>`): the QuickJS engine this
// example is built with has no `fetch`.

import { step, fatal, retryable } from '../sdk/acidic.js';

export const run = step((cx) => {
  const ride = cx.args;
  switch (cx.step) {
    case 'create_ride': return createRide(cx, ride);
    case 'charge_card': return chargeCard(cx, ride);
    case 'send_receipt': return sendReceipt(cx, ride);
    default: throw fatal(`ride-create has no step \`${cx.step}\``);
  }
});

function createRide(cx, ride) {
  const rideId = `ride_${cx.runId}`;
  const amount = fareCents(ride.origin, ride.target);
  cx.execute(
    'INSERT INTO rides (id, run_key, user_email, origin, target, amount_cents) VALUES ($1, $2, $3, $4, $5, $6)',
    [rideId, cx.key, ride.user, JSON.stringify(ride.origin), JSON.stringify(ride.target), amount],
  );
  audit(cx, rideId, 'created', `for ${ride.user}`);
  cx.set('ride_id', rideId);
  cx.set('amount_cents', amount);
  cx.info(`created ${rideId} for ${ride.user}`);
}

function audit(cx, rideId, action, detail) {
  cx.execute('INSERT INTO audit_records (ride_id, action, detail) VALUES ($1, $2, $3)', [rideId, action, detail]);
}

// Test cards: `tok_chargeDeclined` fails for good; with `tok_flaky` the first
// attempt's answer is lost after the charge went through, so the retry
// charges again with the same key (and gets the same charge).
function chargeCard(cx, ride) {
  const rideId = cx.require('ride_id');
  const amount = cx.require('amount_cents');
  if (ride.card === 'tok_chargeDeclined') {
    // Over HTTP the run answers 402 Payment Required (and replays it).
    cx.setHttpStatus(402);
    throw fatal('card declined');
  }
  const chargeId = `ch_${cx.stepKey}`;
  if (ride.card === 'tok_flaky' && cx.attempt === 1) throw retryable('payment gateway timed out');
  cx.execute('UPDATE rides SET charge_id = $1 WHERE id = $2', [chargeId, rideId]);
  audit(cx, rideId, 'charged', `${amount} cents, ${chargeId}`);
  cx.set('charge_id', chargeId);
  cx.info(`charged ${amount} cents for ${rideId}`);
}

function sendReceipt(cx, ride) {
  const rideId = cx.require('ride_id');
  const amount = cx.require('amount_cents');
  const chargeId = cx.require('charge_id');
  const receipt = { user: ride.user, ride_id: rideId, amount_cents: amount };
  const receiptRun = cx.enqueue('send-receipt', receipt, { key: `receipt-${cx.key}` });
  return cx.finish({ ride_id: rideId, charge_id: chargeId, amount_cents: amount, receipt_run: receiptRun });
}

// A flat fee plus a rate per degree travelled.
function fareCents(origin, target) {
  const distance = Math.hypot(target[0] - origin[0], target[1] - origin[1]);
  return 200 + Math.round(distance * 1000);
}
