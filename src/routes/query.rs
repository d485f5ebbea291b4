//! Query strings: parsed into a typed struct before the handler runs; anything that does
//! not parse is a 400 naming the parameter.

use actix_web::{dev::Payload, FromRequest, HttpRequest};
use serde::{de::DeserializeOwned, Deserialize};

use super::json::error_field;
use crate::{
    domain::{parse_limit, Cursor, FieldError, Sort},
    error::ApiError,
    service::comments::ListQuery,
};

/// Query parameters; anything that does not parse is a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

pub fn parse_query<T: DeserializeOwned>(qs: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(qs.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::BadRequest(
            "bad query string".into(),
            vec![FieldError::new(
                error_field(&path, &message).replace("body", "query"),
                message,
            )],
        )
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(ApiQuery))
    }
}

/// Turns a field error found in a query string into a 400.
pub fn bad_query(e: FieldError) -> ApiError {
    ApiError::BadRequest("bad query string".into(), vec![e])
}

/// `limit` and `cursor`, the paging of every cursor listing (extracted beside the
/// listing's own parameters: each reads the query string and ignores what is not its
/// own). A malformed value is 400 naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl PageParams {
    /// The page size: 1–100, default 20.
    pub fn limit(&self) -> Result<u64, ApiError> {
        parse_limit(self.limit).map_err(bad_query)
    }

    /// A page of a listing in `sort` order (whose cursors are [`Cursor`]s).
    pub fn list(&self, sort: Sort) -> Result<ListQuery, ApiError> {
        Ok(ListQuery {
            sort,
            limit: self.limit()?,
            cursor: self
                .cursor
                .as_deref()
                .map(Cursor::decode)
                .transpose()
                .map_err(bad_query)?,
        })
    }
}
