// The polyglot workflow's second step, in JavaScript: counts the words the
// Rust step left in `words` into the attribute `counts`.
import { step, fatal } from '../sdk/acidic.js';

export const run = step((cx) => {
  const words = cx.require('words');
  if (!Array.isArray(words)) throw fatal('`words` is not a list');
  const counts = {};
  for (const w of words) counts[w] = (counts[w] ?? 0) + 1;
  cx.set('counts', counts);
  cx.info(`${Object.keys(counts).length} distinct words`);
});
