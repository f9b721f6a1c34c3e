//! NATS-style subject patterns: tokens separated by `.`, `*` matches exactly one token, `>`
//! (last token only) matches one or more remaining tokens.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is empty or has an empty token: {0:?}")]
    EmptyToken(String),
    #[error("'>' may only be the last token: {0:?}")]
    RestNotLast(String),
    #[error("wildcards must be whole tokens: {0:?}")]
    PartialWildcard(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let parts: Vec<&str> = text.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let token = match *part {
                "" => return Err(PatternError::EmptyToken(text.to_owned())),
                "*" => Token::One,
                ">" if index + 1 == parts.len() => Token::Rest,
                ">" => return Err(PatternError::RestNotLast(text.to_owned())),
                p if p.contains('*') || p.contains('>') => {
                    return Err(PatternError::PartialWildcard(text.to_owned()));
                }
                p => Token::Literal(p.to_owned()),
            };
            tokens.push(token);
        }
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for token in &self.tokens {
            match (token, parts.next()) {
                (Token::Rest, Some(_)) => return true,
                (Token::One, Some(_)) => {}
                (Token::Literal(literal), Some(part)) if literal == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let cases = [
            ("sensing.alarm.raised", "sensing.alarm.raised", true),
            ("sensing.alarm.raised", "sensing.alarm.cleared", false),
            ("sensing.*.raised", "sensing.alarm.raised", true),
            ("sensing.*", "sensing.alarm.raised", false),
            ("sensing.>", "sensing.alarm.raised", true),
            ("sensing.>", "sensing", false),
            (">", "anything.at.all", true),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("a.b", "a.b.c", false),
        ];
        for (pattern, subject, expected) in cases {
            let parsed = Pattern::parse(pattern).expect("valid pattern");
            assert_eq!(parsed.matches(subject), expected, "{pattern} vs {subject}");
        }
    }

    #[test]
    fn rejects_malformed_patterns() {
        assert!(matches!(
            Pattern::parse(""),
            Err(PatternError::EmptyToken(_))
        ));
        assert!(matches!(
            Pattern::parse("a..b"),
            Err(PatternError::EmptyToken(_))
        ));
        assert!(matches!(
            Pattern::parse(">.a"),
            Err(PatternError::RestNotLast(_))
        ));
        assert!(matches!(
            Pattern::parse("a.b*"),
            Err(PatternError::PartialWildcard(_))
        ));
    }
}
