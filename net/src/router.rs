//! Method + path-pattern routing with `{param}` captures.

use crate::request::Method;

/// Paths with more segments than this match no route.
const MAX_SEGMENTS: usize = 16;

/// Routes built once at start-up; matching allocates only for captures.
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

#[derive(Debug)]
struct Route<T> {
    method: Method,
    pattern: &'static str,
    segments: Vec<Segment>,
    value: T,
}

#[derive(Debug)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

/// Path parameters captured by a match, percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The value of `{name}`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Outcome of [`Router::at`].
#[derive(Debug)]
pub enum Match<'r, T> {
    /// A route matched.
    Found {
        /// The route's value.
        value: &'r T,
        /// The route's pattern (the metrics label).
        pattern: &'static str,
        /// Captures.
        params: Params,
    },
    /// The path exists with other methods (405 with `Allow`).
    MethodNotAllowed(Vec<Method>),
    /// No route has this path (404).
    NotFound,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route. `pattern` is `/`-separated, `{name}` captures a segment.
    pub fn route(mut self, method: Method, pattern: &'static str, value: T) -> Self {
        let segments = split(pattern)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name),
                    None => Segment::Literal(s),
                },
            )
            .collect();
        self.routes.push(Route {
            method,
            pattern,
            segments,
            value,
        });
        self
    }

    /// Finds the route for `method` and `path`. HEAD falls back to GET.
    pub fn at(&self, method: Method, path: &str) -> Match<'_, T> {
        let mut storage = [""; MAX_SEGMENTS];
        let mut count = 0;
        for part in split(path) {
            if count == MAX_SEGMENTS {
                return Match::NotFound;
            }
            storage[count] = part;
            count += 1;
        }
        let parts = &storage[..count];
        let mut allowed = Vec::new();
        let mut head_fallback = None;
        for route in &self.routes {
            let Some(params) = matches(&route.segments, parts) else {
                continue;
            };
            if route.method == method {
                return Match::Found {
                    value: &route.value,
                    pattern: route.pattern,
                    params,
                };
            }
            if method == Method::Head && route.method == Method::Get && head_fallback.is_none() {
                head_fallback = Some((route, params));
                continue;
            }
            allowed.push(route.method);
        }
        if let Some((route, params)) = head_fallback {
            return Match::Found {
                value: &route.value,
                pattern: route.pattern,
                params,
            };
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed(allowed)
        }
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(segments: &[Segment], parts: &[&str]) -> Option<Params> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut params = Params::default();
    for (segment, part) in segments.iter().zip(parts) {
        match segment {
            Segment::Literal(lit) if lit == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => {
                let value = percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .ok()?;
                params.0.push((name, value.into_owned()));
            }
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_params_and_methods() {
        let r = Router::new()
            .route(Method::Get, "/api/v1/products/{sku}", 1)
            .route(Method::Patch, "/api/v1/products/{sku}", 2)
            .route(Method::Get, "/healthz", 3);
        match r.at(Method::Get, "/api/v1/products/a%20b") {
            Match::Found {
                value,
                params,
                pattern,
            } => {
                assert_eq!(*value, 1);
                assert_eq!(params.get("sku"), Some("a b"));
                assert_eq!(pattern, "/api/v1/products/{sku}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r.at(Method::Head, "/healthz"),
            Match::Found { value: 3, .. }
        ));
        assert!(matches!(
            r.at(Method::Delete, "/api/v1/products/x"),
            Match::MethodNotAllowed(_)
        ));
        assert!(matches!(r.at(Method::Get, "/nope"), Match::NotFound));
        assert!(matches!(
            r.at(Method::Get, "/api/v1/products/%ff"),
            Match::NotFound
        ));
    }
}
