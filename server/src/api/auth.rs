//! Auth handlers: register, login, refresh, logout, me.
//!
//! Passwords are hashed and verified on the hasher threads (never on the
//! shard's loop). A user lives on the shard of their email (their id is
//! drawn to hash there), so login, refresh and profile each take one hop.

use serde::Deserialize;

use rayltics_commerce::DomainError;
use rayltics_commerce::auth::{AuthError, Claims, RefreshToken, Role};
use rayltics_commerce::model::{ROLE_ADMIN, ROLE_CUSTOMER, UserRec};
use rayltics_commerce::{ids, model};
use rayltics_net::Response;

use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, call, call_owner, unexpected};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    password: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
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

/// POST /api/v1/auth/register
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

/// POST /api/v1/auth/login
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

/// POST /api/v1/auth/refresh
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

/// POST /api/v1/auth/logout
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

/// GET /api/v1/me
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
