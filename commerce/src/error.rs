//! Domain errors. Each maps to one HTTP status and one stable API `code`
//! (the edge turns it into problem+json in one place).

/// Why a commerce operation was refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// Bad input; the detail names the field. Retrying the same input fails.
    #[error("{0}")]
    Validation(String),
    /// The thing does not exist (or the caller may not know it exists).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Missing, bad or expired credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Wrong email or password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The caller lacks the role or ownership.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Registration with an email in use.
    #[error("email already registered")]
    EmailTaken,
    /// Product creation with a SKU in use.
    #[error("sku already exists")]
    SkuTaken,
    /// Not enough available stock for a line.
    #[error("not enough stock for {0}")]
    OutOfStock(String),
    /// The sale's pool cannot cover the purchase.
    #[error("the sale is sold out")]
    SoldOut,
    /// The purchase would put the user over the sale's per-user limit.
    #[error("per-user limit of {0} units reached")]
    LimitExceeded(u32),
    /// Outside the sale's window.
    #[error("the sale is not active")]
    SaleNotActive,
    /// A state conflict (`code`, detail), e.g. paying a cancelled order.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// Same idempotency key, different request.
    #[error("Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    /// Same idempotency key, first request still running. Retry later.
    #[error("a request with this Idempotency-Key is in progress")]
    IdempotencyInProgress,
    /// Too many attempts; retry after this many seconds.
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    /// The shard cannot make changes durable (journal failure) or a worker
    /// pool is saturated. Retrying later may help.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

impl DomainError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            DomainError::Validation(_) => 422,
            DomainError::NotFound(_) => 404,
            DomainError::Unauthorized(_) | DomainError::InvalidCredentials => 401,
            DomainError::Forbidden(_) | DomainError::LimitExceeded(_) => 403,
            DomainError::EmailTaken
            | DomainError::SkuTaken
            | DomainError::OutOfStock(_)
            | DomainError::SoldOut
            | DomainError::SaleNotActive
            | DomainError::Conflict(..)
            | DomainError::IdempotencyInProgress => 409,
            DomainError::IdempotencyConflict => 422,
            DomainError::RateLimited(_) => 429,
            DomainError::Unavailable(_) => 503,
        }
    }

    /// Stable machine code (API.md Conventions).
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Validation(_) => "validation_failed",
            DomainError::NotFound(_) => "not_found",
            DomainError::Unauthorized(_) => "unauthorized",
            DomainError::InvalidCredentials => "invalid_credentials",
            DomainError::Forbidden(_) => "forbidden",
            DomainError::EmailTaken => "email_taken",
            DomainError::SkuTaken => "sku_taken",
            DomainError::OutOfStock(_) => "out_of_stock",
            DomainError::SoldOut => "sold_out",
            DomainError::LimitExceeded(_) => "limit_exceeded",
            DomainError::SaleNotActive => "sale_not_active",
            DomainError::Conflict(code, _) => code,
            DomainError::IdempotencyConflict => "idempotency_conflict",
            DomainError::IdempotencyInProgress => "idempotency_in_progress",
            DomainError::RateLimited(_) => "rate_limited",
            DomainError::Unavailable(_) => "unavailable",
        }
    }

    /// Shorthand for a validation error.
    pub fn invalid(detail: impl Into<String>) -> Self {
        DomainError::Validation(detail.into())
    }
}

/// Result of a domain operation.
pub type DomainResult<T> = Result<T, DomainError>;
