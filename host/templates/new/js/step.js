// The `{{name}}` workflow's steps. One component serves both: it looks at
// `cx.step`. Everything a step does through `cx` commits with the step, or
// not at all. Built with jco on QuickJS: no `fetch`, no Node.js APIs; other
// packages from node_modules can be imported.

import { step, fatal } from 'acidic-step';

export const run = step((cx) => {
  switch (cx.step) {
    case 'greet': {
      const name = cx.arg('name');                // the run's args (a missing one fails the run)
      if (!name) throw fatal('name is empty');    // fails the run, commits nothing
      cx.info(`greeting ${name}`);                // kept with the step's record
      cx.set('greeting', `hello, ${name}`);       // an attribute, committed with the step
      return;                                     // the next step runs
    }
    case 'finish':
      return cx.finish(cx.require('greeting'));   // the run's result
    default:
      throw fatal(`{{name}} has no step \`${cx.step}\``);
  }
});
