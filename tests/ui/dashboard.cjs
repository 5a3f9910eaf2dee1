// The dashboard in a real browser: Debian's chromium, headless, driven by
// Playwright's core. Run by tests/all/serve.rs against a real `acidic serve`:
//   node dashboard.cjs BASE_URL TOKEN SCREENSHOT_DIR
// It exits non-zero, saying what it expected, at the first thing that is not so.

const { chromium } = require('playwright-core');
const assert = require('node:assert/strict');
const path = require('node:path');

const [base, token, shots] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15000);
    page.on('dialog', (d) => d.accept());
    const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });

    // Without a session every page sends the browser to the login form.
    await page.goto(`${base}/ui/runs`);
    assert.match(page.url(), /\/ui\/login/, 'an unsigned visit lands on the login form');
    await page.fill('input[name=token]', 'not-a-token-of-this-server');
    await page.click('button');
    assert.match(page.url(), /failed=1/, 'an unknown token is refused');
    assert.match(await page.textContent('body'), /not known/);
    await shot('login');

    await page.fill('input[name=token]', token);
    await page.click('button');
    assert.match(page.url(), /\/ui\/runs$/, 'signed in, on the runs');
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'acidic_session');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true, 'HttpOnly');
    assert.equal(session.sameSite, 'Strict', 'SameSite=Strict');

    // The list: every run, counts per status.
    const rows = await page.locator('#runs tbody tr[data-key]').count();
    assert.ok(rows >= 4, `at least the 4 runs made, saw ${rows}`);
    const counts = await page.textContent('#counts');
    for (const s of ['succeeded', 'failed', 'pending', 'cancelled']) {
      assert.ok(counts.includes(s), `a count of ${s} runs: ${counts}`);
    }
    await shot('runs');

    // Filter: the failed runs only.
    await page.selectOption('select[name=status]', 'failed');
    await page.click('#apply');
    await page.waitForURL(/status=failed/);
    const failed = await page.locator('#runs tbody tr[data-key]').allTextContents();
    assert.equal(failed.length, 1, `one failed run: ${failed}`);
    assert.ok(failed[0].includes('order-bad'), failed[0]);
    // And by key prefix.
    await page.goto(`${base}/ui/runs?key=order-p`);
    const byKey = await page.locator('#runs tbody tr[data-key]').evaluateAll((trs) => trs.map((t) => t.dataset.key));
    assert.deepEqual(byKey, ['order-pending'], 'the key prefix filter');
    const keyCounts = await page.textContent('#counts');
    assert.match(keyCounts, /^\s*all 1\D/, `the counts follow the filter: ${keyCounts}`);
    assert.ok(!keyCounts.includes('failed'), `no failed run has that prefix: ${keyCounts}`);

    // The failed run: its error and its timeline.
    await page.goto(`${base}/ui/runs?status=failed`);
    await page.click('#runs tbody a');
    await page.waitForURL(/\/ui\/runs\/\d+/);
    assert.match(await page.textContent('#status'), /failed/);
    const error = await page.textContent('#last-error');
    assert.match(error, /b failed \(scripted\)/, `the last error: ${error}`);
    assert.match(error, /step b/, error);
    const timeline = await page.locator('#timeline tbody tr').allTextContents();
    assert.ok(timeline.length >= 3, `a committed a, then b failed twice: ${timeline}`);
    assert.ok(timeline[0].includes('a') && timeline[0].includes('succeeded'), timeline[0]);
    assert.ok(timeline.some((t) => t.includes('failed')), timeline.join('|'));
    await page.click('#timeline details summary');
    assert.match(await page.textContent('#timeline'), /hello from a/, 'the stored log line');
    await shot('run-failed');

    // Retry: the run finishes (the page refreshes itself while it runs).
    await page.click('#retry');
    await page.waitForFunction(
      () => document.querySelector('#status')?.textContent.includes('succeeded'),
      null,
      { timeout: 30000, polling: 250 },
    ).catch(async () => {
      for (let i = 0; i < 20; i++) {
        await page.reload();
        if ((await page.textContent('#status')).includes('succeeded')) return;
        await page.waitForTimeout(500);
      }
      throw new Error(`the retried run did not succeed: ${await page.textContent('body')}`);
    });
    // A fresh, whole load (the page may have been mid-refresh).
    await page.goto(page.url().replace(/\?.*$/, ''));
    const after = await page.locator('#timeline tbody tr').allTextContents();
    assert.ok(after.some((t) => /^b3.*(finished|succeeded)/.test(t)), `b committed on its third attempt: ${after.join('|')}`);
    assert.match(await page.textContent('#recovery'), /finished/, 'at the end');
    assert.equal(await page.locator('#last-error').count(), 0, 'a succeeded run shows no stale error');
    await shot('run-detail');

    // A run answered over the API shows the response its key replays.
    await page.goto(`${base}/ui/runs?key=order-ok`);
    await page.click('#runs tbody a');
    await page.waitForURL(/\/ui\/runs\/\d+/);
    assert.match(await page.textContent('#http-status'), /201/);
    assert.ok((await page.textContent('#response')).trim().length > 0, 'the stored body');

    // Retry on the latest version: a pending run on version 1 moves to 2 and finishes there.
    await page.goto(`${base}/ui/runs?key=order-later`);
    await page.click('#runs tbody a');
    await page.waitForURL(/\/ui\/runs\/\d+/);
    const runUrl = page.url();
    assert.match(await page.textContent('body'), /orders version 1/, 'on version 1 first');
    await page.click('#upgrade');
    await page.waitForURL(/notice=/);
    assert.match(await page.textContent('#notice'), /upgrade: requeued at step `b` \(version 2\)/);
    for (let i = 0; ; i++) {
      await page.goto(runUrl);
      if ((await page.textContent('#status')).includes('succeeded')) break;
      assert.ok(i < 40, `the upgraded run did not succeed: ${await page.textContent('body')}`);
      await page.waitForTimeout(250);
    }
    assert.match(await page.textContent('body'), /orders version 2/, 'finished on version 2');

    // Workflows, and queues and health.
    await page.goto(`${base}/ui/workflows`);
    const wf = await page.textContent('section.workflow[data-name=orders]');
    assert.match(wf, /New runs get version 2/, wf);
    assert.match(wf, /sql read-write/, 'the grants are shown');
    await shot('workflows');
    await page.goto(`${base}/ui/queues`);
    assert.match(await page.textContent('#queues'), /default/);
    assert.equal(await page.locator('#throughput rect').count() > 0, true, 'the chart has bars');
    await shot('queues');

    // Bulk cancel of the pending run, confirmed.
    await page.goto(`${base}/ui/runs?status=pending`);
    await page.check('#runs tbody input[name=id]');
    await page.click('button[value=cancel]');
    await page.waitForURL(/notice=/);
    assert.match(await page.textContent('#notice'), /cancel: 1 run done/);

    // A form posted without its CSRF token is refused.
    const status = await page.evaluate(async () => {
      const r = await fetch('/ui/runs/1/cancel', { method: 'POST', body: 'csrf=forged', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      return r.status;
    });
    assert.equal(status, 403, 'a forged form is refused');

    // Signing out ends the session.
    await page.goto(`${base}/ui/runs`);
    await page.click('header form button');
    await page.goto(`${base}/ui/runs`);
    assert.match(page.url(), /\/ui\/login/, 'signed out');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
