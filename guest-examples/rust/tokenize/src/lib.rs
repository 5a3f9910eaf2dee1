//! The polyglot workflow's first step, in Rust: splits the run's `text` into
//! lower-case words and leaves them in the attribute `words`.

use acidic_guest::{Ctx, Outcome, Step, StepError, export_step};

struct Tokenize;

impl Step for Tokenize {
    fn run(cx: &mut Ctx) -> Result<Outcome, StepError> {
        let text: String = cx.arg("text")?;
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Err(StepError::fatal("`text` has no words"));
        }
        cx.info(&format!("{} words", words.len()));
        cx.set("words", &words)?;
        Ok(Outcome::Continue)
    }
}

export_step!(Tokenize);
