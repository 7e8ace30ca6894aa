//! CSV batches: many mailboxes in one file, validated before anything is stored.
//!
//! The Exchange Online format works as is: `EmailAddress,UserName,Password`, where
//! `EmailAddress` is the destination login and `UserName`/`Password` the source's. Optional
//! columns `DestinationUserName` and `DestinationPassword` give separate destination
//! credentials; without them the destination logs in as `EmailAddress` with the batch's
//! destination secret (an admin/proxy login). Every problem is reported at once, with the
//! messages Exchange administrators know. Rows are numbered as a spreadsheet shows them: the
//! header is row 1.
//!
//! When the template logs in to the source as an administrator on behalf of each user
//! (`admin_user`, Exchange's "Option 2" without repeating the administrator in every row),
//! [`parse_batch_with`] takes rows without a `Password` (the column may be left out or left
//! empty); a row that gives one logs in as its user with it.

use std::collections::HashMap;
use std::fmt;

use crate::spec::Secret;

/// Most mailboxes in one batch (as Exchange Online).
pub const MAX_ROWS: usize = 50_000;

/// Columns every batch needs.
pub const REQUIRED: [&str; 3] = ["EmailAddress", "UserName", "Password"];

/// One mailbox of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// Row in the file (header = 1).
    pub row: usize,
    /// Destination mailbox (and default destination login).
    pub email: String,
    /// Source login.
    pub source_user: String,
    /// Source password; `None` only when the batch's source logs in as an administrator.
    pub source_password: Option<Secret>,
    /// Destination login, when given.
    pub destination_user: Option<String>,
    /// Destination password, when given.
    pub destination_password: Option<Secret>,
    /// The shard a plan (`migratectl batch plan`) gave the row: the `Shard` column, `K/N`.
    pub shard: Option<crate::shard::Shard>,
}

/// A problem in a batch file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchProblem {
    /// Nothing in the file.
    Empty,
    /// A required column is not in the header.
    MissingColumn(String),
    /// A row with too few or too many fields.
    WrongColumns {
        /// Row (header = 1).
        row: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        actual: usize,
    },
    /// More than [`MAX_ROWS`] mailboxes.
    TooManyRows(usize),
    /// A mailbox listed twice.
    Duplicate {
        /// Row of the second mention.
        row: usize,
        /// Row of the first.
        first: usize,
        /// The mailbox.
        mailbox: String,
    },
    /// An `EmailAddress` that is not an address.
    MalformedAddress {
        /// Row.
        row: usize,
        /// The value.
        value: String,
    },
    /// A required field left empty.
    EmptyField {
        /// Row.
        row: usize,
        /// Column.
        column: String,
    },
    /// The file is not CSV at all (an unterminated quote, invalid UTF-8).
    Unreadable(String),
    /// A batch of that name exists (checked by the daemon).
    Exists(String),
    /// A `Shard` value that is not `K/N`.
    BadShard {
        /// Row.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// A row planned for another number of shards than the daemon runs (checked by the
    /// daemon).
    OtherShards {
        /// Row.
        row: usize,
        /// The row's shard.
        planned: crate::shard::Shard,
        /// The daemon's.
        daemon: crate::shard::Shard,
    },
}

impl fmt::Display for BatchProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str(
                "Upload file can't be empty. Give a header row (EmailAddress,UserName,Password) and one row per mailbox.",
            ),
            Self::MissingColumn(c) => write!(
                f,
                "Column \"{c}\" is missing from the CSV file. The import process can't continue because this column is required. Please edit the CSV file and re-submit it."
            ),
            Self::WrongColumns { row, expected, actual } => write!(
                f,
                "Row {row} has the wrong number of columns. Expected number: {expected}. Actual number: {actual}. Please edit this row and re-submit the file."
            ),
            Self::TooManyRows(n) => write!(
                f,
                "The CSV file contains more than 50,000 rows ({n}). Please divide the file into two or more files and submit them separately."
            ),
            Self::Duplicate { row, first, mailbox } => {
                write!(f, "Row {row}: mailbox {mailbox} is already in row {first}. List each mailbox once.")
            }
            Self::MalformedAddress { row, value } => {
                write!(f, "Row {row}: EmailAddress {value:?} is not an email address (name@domain).")
            }
            Self::EmptyField { row, column } => write!(f, "Row {row}: {column} is empty."),
            Self::Unreadable(e) => write!(f, "The CSV file cannot be read: {e}"),
            Self::BadShard { row, message } => write!(f, "Row {row}: Shard: {message}."),
            Self::OtherShards { row, planned, daemon } => write!(
                f,
                "Row {row}: Shard {planned} was planned for {} shards, but this daemon is shard {daemon}: run {} daemons (--shard K/{}), or plan the batch again with --shards {}.",
                planned.count, planned.count, planned.count, daemon.count
            ),
            Self::Exists(name) => write!(
                f,
                "The migration batch {name} already exists. Delete it first (migratectl batch delete {name}) or choose another name."
            ),
        }
    }
}

fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | ';' | '<' | '>'))
}

/// Parses and validates a batch file whose rows each give the source password; every problem
/// is returned at once.
///
/// # Errors
///
/// The list of [`BatchProblem`]s, in file order.
pub fn parse_batch(text: &str) -> Result<Vec<BatchRow>, Vec<BatchProblem>> {
    parse_batch_with(text, false)
}

/// As [`parse_batch`]; with `password_optional` (the template's source logs in as an
/// administrator) the `Password` column may be missing or empty.
///
/// # Errors
///
/// The list of [`BatchProblem`]s, in file order.
pub fn parse_batch_with(
    text: &str,
    password_optional: bool,
) -> Result<Vec<BatchRow>, Vec<BatchProblem>> {
    if text.trim().is_empty() {
        return Err(vec![BatchProblem::Empty]);
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![BatchProblem::Unreadable(e.to_string())]),
    };
    let index = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut problems: Vec<BatchProblem> = REQUIRED
        .iter()
        .filter(|c| !(password_optional && **c == "Password"))
        .filter(|c| index(c).is_none())
        .map(|c| BatchProblem::MissingColumn((*c).to_owned()))
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let (email_i, user_i, pass_i) = (index("EmailAddress"), index("UserName"), index("Password"));
    let (duser_i, dpass_i) = (index("DestinationUserName"), index("DestinationPassword"));
    let shard_i = index("Shard");
    let mut rows = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut count = 0;
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(BatchProblem::Unreadable(format!("row {row}: {e}")));
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        count += 1;
        if record.len() != headers.len() {
            problems.push(BatchProblem::WrongColumns {
                row,
                expected: headers.len(),
                actual: record.len(),
            });
            continue;
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").to_owned();
        let email = field(email_i);
        for (column, value) in [
            ("EmailAddress", &email),
            ("UserName", &field(user_i)),
            ("Password", &field(pass_i)),
        ] {
            if value.is_empty() && !(password_optional && column == "Password") {
                problems.push(BatchProblem::EmptyField {
                    row,
                    column: column.into(),
                });
            }
        }
        if !email.is_empty() && !is_address(&email) {
            problems.push(BatchProblem::MalformedAddress {
                row,
                value: email.clone(),
            });
        }
        if !email.is_empty() {
            match seen.get(&email.to_ascii_lowercase()) {
                Some(first) => problems.push(BatchProblem::Duplicate {
                    row,
                    first: *first,
                    mailbox: email.clone(),
                }),
                None => {
                    seen.insert(email.to_ascii_lowercase(), row);
                }
            }
        }
        let optional = |i: Option<usize>| Some(field(i)).filter(|v| !v.is_empty());
        let shard = match optional(shard_i).map(|v| crate::shard::Shard::parse(&v)) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(message)) => {
                problems.push(BatchProblem::BadShard { row, message });
                None
            }
        };
        rows.push(BatchRow {
            row,
            email,
            source_user: field(user_i),
            source_password: optional(pass_i).map(Secret::new),
            destination_user: optional(duser_i),
            destination_password: optional(dpass_i).map(Secret::new),
            shard,
        });
    }
    if count == 0 {
        problems.insert(0, BatchProblem::Empty);
    }
    if count > MAX_ROWS {
        problems.insert(0, BatchProblem::TooManyRows(count));
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_format_parses() {
        let rows = parse_batch("EmailAddress,UserName,Password\nalice@new.example,alice,pw1\n bob@new.example , bob , pw2 \n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].email, "bob@new.example");
        assert_eq!(rows[1].source_user, "bob");
        assert_eq!(
            rows[1].source_password.as_ref().map(Secret::expose),
            Some("pw2")
        );
        assert_eq!(rows[1].row, 3);
        assert_eq!(rows[0].destination_user, None);
    }

    #[test]
    fn extended_columns_give_destination_credentials() {
        let rows = parse_batch("EmailAddress,UserName,Password,DestinationUserName,DestinationPassword\na@x.example,a,p,a-new,q\n").unwrap();
        assert_eq!(rows[0].destination_user.as_deref(), Some("a-new"));
        assert_eq!(
            rows[0].destination_password.as_ref().map(Secret::expose),
            Some("q")
        );
    }

    #[test]
    fn with_an_administrator_rows_need_no_password_and_one_given_is_kept() {
        let rows = parse_batch_with(
            "EmailAddress,UserName,Password\na@x.example,a,\nb@x.example,b,own\n",
            true,
        )
        .unwrap();
        assert_eq!(rows[0].source_password, None);
        assert_eq!(
            rows[1].source_password.as_ref().map(Secret::expose),
            Some("own")
        );
        let rows = parse_batch_with("EmailAddress,UserName\na@x.example,a\n", true).unwrap();
        assert_eq!(
            (rows[0].source_user.as_str(), &rows[0].source_password),
            ("a", &None)
        );
        // Without one, the column and each value are required, as Exchange has them.
        let err = parse_batch("EmailAddress,UserName,Password\na@x.example,a,\n").unwrap_err();
        assert_eq!(err[0].to_string(), "Row 2: Password is empty.");
        let err = parse_batch_with("EmailAddress,UserName\na@x.example,a\n", false).unwrap_err();
        assert_eq!(err, vec![BatchProblem::MissingColumn("Password".into())]);
    }

    #[test]
    fn an_empty_file_and_a_missing_column_say_so_as_exchange_does() {
        assert_eq!(
            parse_batch("  \n").unwrap_err()[0].to_string(),
            BatchProblem::Empty.to_string()
        );
        let err = parse_batch("EmailAddress,Password\na@b.example,x\n").unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "Column \"UserName\" is missing from the CSV file. The import process can't continue because this column is required. Please edit the CSV file and re-submit it."
        );
        assert_eq!(
            parse_batch("EmailAddress,UserName,Password\n").unwrap_err(),
            vec![BatchProblem::Empty]
        );
    }

    #[test]
    fn every_row_problem_is_reported_at_once() {
        let text = "EmailAddress,UserName,Password\n\
                    a@x.example,a,p\n\
                    b@x.example,b\n\
                    not-an-address,c,p\n\
                    A@x.example,a2,p\n\
                    d@x.example,,p\n";
        let err = parse_batch(text).unwrap_err();
        let messages: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "Row 3 has the wrong number of columns. Expected number: 3. Actual number: 2. Please edit this row and re-submit the file.",
                "Row 4: EmailAddress \"not-an-address\" is not an email address (name@domain).",
                "Row 5: mailbox A@x.example is already in row 2. List each mailbox once.",
                "Row 6: UserName is empty.",
            ]
        );
    }

    #[test]
    fn a_planned_shard_is_read_and_a_bad_one_named() {
        let rows = parse_batch(
            "EmailAddress,UserName,Password,Shard\na@x.example,a,p,1/3\nb@x.example,b,p,\n",
        )
        .unwrap();
        assert_eq!(
            rows[0].shard,
            Some(crate::shard::Shard { index: 1, count: 3 })
        );
        assert_eq!(rows[1].shard, None);
        let err =
            parse_batch("EmailAddress,UserName,Password,Shard\na@x.example,a,p,3/3\n").unwrap_err();
        let text = err[0].to_string();
        assert!(text.starts_with("Row 2: Shard: shard \"3/3\""), "{text}");
    }

    #[test]
    fn more_than_50000_rows_are_refused() {
        let mut text = String::from("EmailAddress,UserName,Password\n");
        for i in 0..=MAX_ROWS {
            text.push_str(&format!("u{i}@x.example,u{i},p\n"));
        }
        let err = parse_batch(&text).unwrap_err();
        assert!(
            err[0]
                .to_string()
                .starts_with("The CSV file contains more than 50,000 rows (50001)."),
            "{}",
            err[0]
        );
    }
}
