//! Calibration: precision and recall of the classifier over a labelled corpus
//! (`fixtures/safety/*.yaml`: a list of `{id, text, kinds}`, `kinds` being every kind the text
//! holds, `[]` for a hard negative).
//!
//! Scores are per sample: a kind (or category) found in a sample that is labelled with it is a
//! true positive, found but not labelled a false positive, labelled but not found a false
//! negative. How many times it occurs in the sample does not count.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{Category, Classifier, builtin_category};

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// A stable name, for reports.
    pub id: String,
    /// The text.
    pub text: String,
    /// Every kind the text holds.
    pub kinds: Vec<String>,
    /// Why it is here (documentation only).
    #[serde(default)]
    pub note: Option<String>,
}

/// Parse a corpus file; an error names the problem (and the sample, for unknown kinds).
pub fn parse_corpus(text: &str) -> Result<Vec<Sample>, String> {
    let samples: Vec<Sample> = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    for s in &samples {
        if let Some(k) = s.kinds.iter().find(|k| builtin_category(k).is_none()) {
            return Err(format!("sample `{}`: unknown kind `{k}`", s.id));
        }
    }
    Ok(samples)
}

/// Counts for one class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// The kind or category.
    pub class: String,
    /// Samples labelled with it.
    pub labelled: usize,
    /// Labelled and found.
    pub tp: usize,
    /// Found, not labelled.
    pub fp: usize,
    /// Labelled, not found.
    pub fn_: usize,
}

impl Score {
    /// tp / (tp + fp); `None` when nothing was found.
    pub fn precision(&self) -> Option<f64> {
        let found = self.tp + self.fp;
        (found > 0).then(|| self.tp as f64 / found as f64)
    }

    /// tp / (tp + fn); `None` when nothing is labelled.
    pub fn recall(&self) -> Option<f64> {
        let labelled = self.tp + self.fn_;
        (labelled > 0).then(|| self.tp as f64 / labelled as f64)
    }
}

/// A sample the classifier got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// The sample's id.
    pub id: String,
    /// Kinds labelled and not found.
    pub missed: Vec<String>,
    /// Kinds found and not labelled.
    pub extra: Vec<String>,
}

/// The evaluation of a corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// How many samples.
    pub samples: usize,
    /// Per built-in kind, in table order.
    pub kinds: Vec<Score>,
    /// Per category.
    pub categories: Vec<Score>,
    /// The samples with a false positive or negative.
    pub misses: Vec<Miss>,
}

fn tally(scores: &mut [Score], expected: &BTreeSet<&str>, found: &BTreeSet<&str>) {
    for score in scores {
        let (e, f) = (
            expected.contains(&*score.class),
            found.contains(&*score.class),
        );
        score.labelled += usize::from(e);
        score.tp += usize::from(e && f);
        score.fp += usize::from(f && !e);
        score.fn_ += usize::from(e && !f);
    }
}

/// Classify every sample and score the result.
pub fn evaluate(classifier: &Classifier, samples: &[Sample]) -> Report {
    let mut report = Report {
        samples: samples.len(),
        kinds: super::KINDS
            .iter()
            .map(|(k, _)| Score {
                class: (*k).to_owned(),
                ..Score::default()
            })
            .collect(),
        categories: Category::ALL
            .iter()
            .map(|c| Score {
                class: c.as_str().to_owned(),
                ..Score::default()
            })
            .collect(),
        misses: Vec::new(),
    };
    for sample in samples {
        let findings = classifier.scan(&sample.text);
        let found: BTreeSet<&str> = findings.iter().map(|f| &*f.kind).collect();
        let expected: BTreeSet<&str> = sample.kinds.iter().map(String::as_str).collect();
        tally(&mut report.kinds, &expected, &found);
        let category_of = |k: &&str| builtin_category(k).map(Category::as_str);
        let found_c: BTreeSet<&str> = found.iter().filter_map(category_of).collect();
        let expected_c: BTreeSet<&str> = expected.iter().filter_map(category_of).collect();
        tally(&mut report.categories, &expected_c, &found_c);
        if found != expected {
            report.misses.push(Miss {
                id: sample.id.clone(),
                missed: expected
                    .difference(&found)
                    .map(|k| (*k).to_owned())
                    .collect(),
                extra: found
                    .difference(&expected)
                    .map(|k| (*k).to_owned())
                    .collect(),
            });
        }
    }
    report
}
