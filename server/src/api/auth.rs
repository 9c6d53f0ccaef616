//! Auth handlers: register, login, refresh, logout, me.
//!
//! Passwords are hashed and verified on the hasher threads (never on the
//! shard's loop). A user lives on the shard of their email (their id is
//! drawn to hash there), so login, refresh and profile each take one hop.

use serde::Deserialize;
use utoipa::ToSchema;

use rayltics_commerce::DomainError;
use rayltics_commerce::auth::{AuthError, Claims, RefreshToken, Role};
use rayltics_commerce::model::{ROLE_ADMIN, ROLE_CUSTOMER, UserRec};
use rayltics_commerce::{ids, model};
use rayltics_net::Response;

use super::openapi::{PROBLEM_JSON, Problem};
use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, call, call_owner, unexpected};

/// A new customer account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RegisterRequest, example = json!({
    "email": "ada@example.com", "password": "correct-horse-battery", "name": "Ada Lovelace"
}))]
pub(super) struct RegisterBody {
    /// Stored lower-cased; must be unique.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    email: String,
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// Display name, trimmed; no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    name: String,
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest, example = json!({"email": "ada@example.com", "password": "correct-horse-battery"}))]
pub(super) struct LoginBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(max_length = 1024)]
    password: String,
}

/// A refresh token from a session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RefreshRequest)]
pub(super) struct RefreshBody {
    refresh_token: String,
}

fn password_rule(p: &str) -> Result<(), ApiError> {
    input::range("password", p.chars().count() as i64, 8, 128)
        .map_err(|_| DomainError::invalid("password: must be 8 to 128 characters").into())
}

fn hasher_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Busy => DomainError::RateLimited(1).into(),
        other => DomainError::Unavailable(other.to_string()).into(),
    }
}

/// Registers a customer and starts a session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    operation_id = "register",
    tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered; a new session", body = views::Session<'static>),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`email_taken`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: a field breaks its rule (named in `detail`)", body = Problem, content_type = PROBLEM_JSON),
        (status = 429, description = "`rate_limited`: password hashing is saturated; see `Retry-After`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn register(ctx: &Ctx<'_>) -> ApiResult {
    let body: RegisterBody = input::json(ctx.req)?;
    let email = input::email(&body.email)?;
    password_rule(&body.password)?;
    input::text("name", &body.name, 1, 100)?;
    let phc = ctx
        .state
        .shared
        .hasher
        .hash(body.password)
        .await
        .map_err(hasher_error)?;
    let home = ctx.router.owner_of(email.as_bytes());
    let user = UserRec {
        id: ids::id_on_shard(home, ctx.router.shard_count()),
        email,
        name: body.name.trim().to_owned(),
        role: ROLE_CUSTOMER,
        password_phc: phc,
        created_at: ctx.now_ms(),
    };
    let refresh = RefreshToken::new(&user.id, &uuid::Uuid::now_v7().to_string());
    let op = Op::Register {
        user,
        family_id: refresh.family_id.clone(),
        digest: refresh.digest(),
    };
    match call(ctx.router, home, op).await? {
        OpReply::User(u) => session(ctx, 201, &u, &refresh),
        other => Err(unexpected(other).into()),
    }
}

/// Logs in: a new session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A new session", body = views::Session<'static>),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`invalid_credentials`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: not a `{email, password}` object", body = Problem, content_type = PROBLEM_JSON),
        (status = 429, description = "`rate_limited`: too many attempts from this address; see `Retry-After`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn login(ctx: &Ctx<'_>) -> ApiResult {
    let body: LoginBody = input::json(ctx.req)?;
    let email = input::email(&body.email).map_err(|_| DomainError::InvalidCredentials)?;
    if body.password.len() > 1024 {
        return Err(DomainError::InvalidCredentials.into());
    }
    if let Some(ip) = ctx.req.peer_ip()
        && let Err(wait) = ctx.state.ip_limits.borrow_mut().check(&ip, ctx.now_ms())
    {
        return Err(DomainError::RateLimited(wait.secs).into());
    }
    let hasher = &ctx.state.shared.hasher;
    let user = match call_owner(
        ctx.router,
        &email,
        Op::LoginLookup {
            email: email.clone(),
        },
    )
    .await
    {
        Ok(OpReply::User(u)) => u,
        Err(DomainError::InvalidCredentials) => {
            // Same work as a wrong password: no user enumeration by timing.
            hasher
                .verify_dummy(body.password)
                .await
                .map_err(hasher_error)?;
            return Err(DomainError::InvalidCredentials.into());
        }
        Err(e) => return Err(e.into()),
        Ok(other) => return Err(unexpected(other).into()),
    };
    let ok = hasher
        .verify(body.password, user.password_phc.clone())
        .await
        .map_err(hasher_error)?;
    if !ok {
        return Err(DomainError::InvalidCredentials.into());
    }
    let refresh = RefreshToken::new(&user.id, &uuid::Uuid::now_v7().to_string());
    let op = Op::StartSession {
        user_id: user.id.clone(),
        family_id: refresh.family_id.clone(),
        digest: refresh.digest(),
    };
    match call_owner(ctx.router, &user.id, op).await? {
        OpReply::User(u) => session(ctx, 200, &u, &refresh),
        other => Err(unexpected(other).into()),
    }
}

/// Rotates a refresh token.
///
/// Answers with a new access token and refresh token. Re-use of a rotated
/// token is refused and revokes its whole family.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refresh",
    tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "A new token pair", body = views::Session<'static>),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: unknown, revoked or re-used refresh token", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: not a `{refresh_token}` object", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn refresh(ctx: &Ctx<'_>) -> ApiResult {
    let body: RefreshBody = input::json(ctx.req)?;
    let presented = RefreshToken::parse(&body.refresh_token)
        .filter(|t| ids::is_id(&t.user_id))
        .ok_or(DomainError::Unauthorized("invalid refresh token"))?;
    let next = RefreshToken::new(&presented.user_id, &presented.family_id);
    let op = Op::Refresh {
        user_id: presented.user_id.clone(),
        family_id: presented.family_id.clone(),
        presented: presented.digest(),
        next: next.digest(),
    };
    match call_owner(ctx.router, &presented.user_id, op).await? {
        OpReply::User(u) => session(ctx, 200, &u, &next),
        other => Err(unexpected(other).into()),
    }
}

/// Logs out.
///
/// Revokes the refresh token's family. Unknown tokens are ignored.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: not a `{refresh_token}` object", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn logout(ctx: &Ctx<'_>) -> ApiResult {
    let body: RefreshBody = input::json(ctx.req)?;
    if let Some(t) = RefreshToken::parse(&body.refresh_token).filter(|t| ids::is_id(&t.user_id)) {
        let op = Op::Logout {
            user_id: t.user_id.clone(),
            family_id: t.family_id.clone(),
            presented: t.digest(),
        };
        call_owner(ctx.router, &t.user_id, op).await?;
    }
    Ok(Response::new(204))
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "get_me",
    tag = "auth",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller", body = views::UserView<'static>),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`: the token's user no longer exists", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn me(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let op = Op::GetUser {
        user_id: caller.user_id.clone(),
    };
    match call_owner(ctx.router, &caller.user_id, op).await? {
        OpReply::User(u) => Ok(Response::json(200, &views::user(&u))),
        other => Err(unexpected(other).into()),
    }
}

/// The session answer: a fresh access token and the given refresh token.
fn session(ctx: &Ctx<'_>, status: u16, u: &model::UserRec, refresh: &RefreshToken) -> ApiResult {
    let shared = &ctx.state.shared;
    let iat = ctx.now_ms() / 1000;
    let claims = Claims {
        sub: u.id.clone(),
        email: u.email.clone(),
        role: if u.role == ROLE_ADMIN {
            Role::Admin
        } else {
            Role::Customer
        },
        iat,
        exp: iat.saturating_add(shared.access_ttl_secs),
    };
    let access_token = shared
        .keys
        .issue(&claims)
        .map_err(|e| DomainError::Unavailable(e.to_string()))?;
    Ok(Response::json(
        status,
        &views::Session {
            user: views::user(u),
            access_token,
            refresh_token: refresh.to_string(),
            token_type: "Bearer",
            expires_in: shared.access_ttl_secs,
        },
    ))
}
