//! The `page` and `page_size` query parameters every list takes, as two types that carry
//! their own bounds and defaults (so a list operation declares them in one line each and the
//! OpenAPI document states the same bounds everywhere), and the [`Paging`] they make.
use std::borrow::Cow;

use poem_openapi::Object;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};

pub use entities::query::Paging;

/// Lists start at page 1 …
const FIRST_PAGE: u64 = 1;
/// … with 20 items a page unless asked otherwise …
const DEFAULT_PAGE_SIZE: u64 = 20;
/// … and at most 100.
pub const MAX_PAGE_SIZE: u64 = 100;
/// The last page anyone may ask for: beyond it offsets stop meaning anything (and the
/// largest numbers overflow them); narrow the list with its filters instead.
pub const MAX_PAGE: u64 = 100_000;

/// `page`: which page, from 1 to 100,000 (default 1).
#[derive(Clone, Copy, Debug)]
pub struct PageNumber(pub u64);

/// `page_size`: items a page, 1 to 100 (default 20).
#[derive(Clone, Copy, Debug)]
pub struct PageSize(pub u64);

/// The paging a list operation's two parameters ask for.
pub fn paging(page: PageNumber, size: PageSize) -> Paging {
    Paging {
        page: page.0,
        page_size: size.0,
    }
}

/// Where a page stands in its list: flattened into every paginated response.
#[derive(Debug, Object)]
pub struct PageInfo {
    pub page: u64,
    pub page_size: u64,
    pub total: u64,
    pub total_pages: u64,
}

/// The page that `paging` asked for, of `total` items.
pub fn page_info(paging: Paging, total: u64) -> PageInfo {
    PageInfo {
        page: paging.page,
        page_size: paging.page_size,
        total,
        total_pages: paging.total_pages(total),
    }
}

/// An integer query parameter with bounds and a default, checked while parsing.
trait BoundedParam: Sized {
    const NAME: &'static str;
    const MIN: u64;
    const MAX: Option<u64>;
    const DEFAULT: u64;
    fn new(v: u64) -> Self;
    fn get(&self) -> &u64;
}

impl BoundedParam for PageNumber {
    const NAME: &'static str = "PageNumber";
    const MIN: u64 = FIRST_PAGE;
    const MAX: Option<u64> = Some(MAX_PAGE);
    const DEFAULT: u64 = FIRST_PAGE;
    fn new(v: u64) -> Self {
        PageNumber(v)
    }
    fn get(&self) -> &u64 {
        &self.0
    }
}

impl BoundedParam for PageSize {
    const NAME: &'static str = "PageSize";
    const MIN: u64 = 1;
    const MAX: Option<u64> = Some(MAX_PAGE_SIZE);
    const DEFAULT: u64 = DEFAULT_PAGE_SIZE;
    fn new(v: u64) -> Self {
        PageSize(v)
    }
    fn get(&self) -> &u64 {
        &self.0
    }
}

fn parse_bounded<T: BoundedParam + Type>(value: &str) -> ParseResult<T> {
    let v: u64 = value
        .parse()
        .map_err(|_| ParseError::custom(format!("`{value}` is not a whole number")))?;
    if v < T::MIN {
        return Err(ParseError::custom(format!(
            "verification failed. minimum({})",
            T::MIN
        )));
    }
    if let Some(max) = T::MAX
        && v > max
    {
        return Err(ParseError::custom(format!(
            "verification failed. maximum({max})"
        )));
    }
    Ok(T::new(v))
}

macro_rules! bounded_param_type {
    ($t:ty) => {
        impl Type for $t {
            // Optional: a missing parameter takes the default.
            const IS_REQUIRED: bool = false;
            type RawValueType = u64;
            type RawElementValueType = u64;

            fn name() -> Cow<'static, str> {
                <$t as BoundedParam>::NAME.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let mut schema = MetaSchema::new_with_format("integer", "uint64");
                schema.minimum = Some(<$t as BoundedParam>::MIN as f64);
                schema.maximum = <$t as BoundedParam>::MAX.map(|m| m as f64);
                schema.default = Some(<$t as BoundedParam>::DEFAULT.into());
                MetaSchemaRef::Inline(Box::new(schema))
            }

            fn as_raw_value(&self) -> Option<&u64> {
                Some(self.get())
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a u64> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ParseFromParameter for $t {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                parse_bounded(value)
            }

            fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(
                iter: I,
            ) -> ParseResult<Self> {
                match iter.into_iter().next() {
                    Some(v) => parse_bounded(v.as_ref()),
                    None => Ok(<$t as BoundedParam>::new(<$t as BoundedParam>::DEFAULT)),
                }
            }
        }
    };
}

bounded_param_type!(PageNumber);
bounded_param_type!(PageSize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_defaults() {
        let none: [&str; 0] = [];
        assert_eq!(PageNumber::parse_from_parameters(none).unwrap().0, 1);
        assert_eq!(PageSize::parse_from_parameters(none).unwrap().0, 20);
        assert!(PageNumber::parse_from_parameter("0").is_err());
        assert!(PageNumber::parse_from_parameter("x").is_err());
        assert!(PageSize::parse_from_parameter("101").is_err());
        assert!(PageNumber::parse_from_parameter("100001").is_err());
        assert!(PageNumber::parse_from_parameter("18446744073709551615").is_err());
        assert!(PageNumber::parse_from_parameter("18446744073709551616").is_err());
        assert_eq!(PageSize::parse_from_parameter("100").unwrap().0, 100);
        let p = paging(PageNumber(3), PageSize(20));
        assert_eq!((p.offset(), p.total_pages(41)), (40, 3));
    }
}
