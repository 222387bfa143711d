//! `FhirClient`: reads, searches with bounded paging, and writes that are never retried blindly.

use std::{sync::Arc, time::Duration};

use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION},
};
use url::Url;
use visitbridge_http::{RetryPolicy, Secret, SendError, send_idempotent};

use crate::{
    auth::{TokenSource, TokenSourceError},
    base_url::FhirBaseUrl,
    error::{FhirError, decode_slice},
    model::{Bundle, CapabilityStatement, Id, OperationOutcome, Reference, Resource},
    search::SearchQuery,
};

const FHIR_JSON: &str = "application/fhir+json";

/// How a [`FhirClient`] talks to one FHIR server.
#[derive(Debug, Clone)]
pub struct FhirClientConfig {
    /// The server's base URL.
    pub base_url: FhirBaseUrl,
    /// Headers sent on every call (Epic: `Epic-Client-ID`).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Retries for reads and searches (writes are sent once).
    pub retry: RetryPolicy,
    /// Time allowed for each try, body included, where it must differ from the
    /// `reqwest::Client`'s own total timeout (`visitbridge_http::build_client`, which an
    /// operator sets as `[http] total_timeout_secs`). `None` (the default): the client's.
    pub request_timeout: Option<Duration>,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl FhirClientConfig {
    /// Defaults for `base_url`: no extra headers, the default retry policy, 20 s per try, 8 MiB.
    pub fn new(base_url: FhirBaseUrl) -> Self {
        Self {
            base_url,
            extra_headers: Vec::new(),
            retry: RetryPolicy::default(),
            request_timeout: None,
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a conditional create (`If-None-Exist`) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionalCreate<R> {
    /// 201: the resource was created (with its id, when the server said).
    Created(Option<Id<R>>),
    /// 200 (or 304): one resource matched the criteria; nothing was created.
    AlreadyExists(Option<Id<R>>),
    /// 412: several resources matched; nothing was created. For an idempotency key this means
    /// the event was stored more than once before (by a server without conditional create).
    MultipleMatches,
}

/// What an update (`PUT`) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// 201: a resource with the client-chosen id was created.
    Created,
    /// 200: the resource existed and was replaced.
    Updated,
}

/// An async FHIR R4 client for one server.
///
/// Cheap to clone (the configuration and token source are shared).
#[derive(Clone)]
pub struct FhirClient {
    config: Arc<FhirClientConfig>,
    http: reqwest::Client,
    token: Option<Arc<dyn TokenSource>>,
}

impl std::fmt::Debug for FhirClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FhirClient")
            .field("base_url", &self.config.base_url)
            .field("anonymous", &self.token.is_none())
            .finish_non_exhaustive()
    }
}

/// A response with its body read.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl FhirClient {
    /// A client that authenticates every call but `metadata` with `token`.
    ///
    /// Build `http` with `visitbridge_http::build_client` (connect timeout, no redirects).
    pub fn new(
        config: FhirClientConfig,
        http: reqwest::Client,
        token: Arc<dyn TokenSource>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            http,
            token: Some(token),
        }
    }

    /// A client without credentials: only [`Self::capability_statement`] works (the portal's URL
    /// check and SMART discovery run before any token exists); other calls fail with
    /// [`FhirError::TokenSource`].
    pub fn anonymous(config: FhirClientConfig, http: reqwest::Client) -> Self {
        Self {
            config: Arc::new(config),
            http,
            token: None,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &FhirBaseUrl {
        &self.config.base_url
    }

    /// `GET [base]/metadata`. Never sends a token (the statement is public), so it works on an
    /// anonymous client.
    pub async fn capability_statement(&self) -> Result<CapabilityStatement, FhirError> {
        let url = self.config.base_url.join(&["metadata"]);
        let answer = self.get(url, None).await?;
        let answer = check_status(answer, None)?;
        decode_slice(&answer.body, CapabilityStatement::TYPE)
    }

    /// `GET [base]/{type}/{id}`, retried on 429/5xx/timeouts. 404 and 410 are
    /// [`FhirError::NotFound`].
    pub async fn read<R: Resource>(&self, id: &Id<R>) -> Result<R, FhirError> {
        let token = self.token().await?;
        let url = self.config.base_url.join(&[R::TYPE, id.as_str()]);
        let answer = self.get(url, Some(&token)).await?;
        let answer = check_status(answer, Some((R::TYPE, id.as_str())))?;
        decode_slice(&answer.body, R::TYPE)
    }

    /// `GET [base]/{type}?{query}`: the first page. Entries are decoded one by one (see
    /// [`Bundle`]).
    pub async fn search<R: Resource>(
        &self,
        query: &SearchQuery<R>,
    ) -> Result<Bundle<R>, FhirError> {
        let token = self.token().await?;
        let mut url = self.config.base_url.join(&[R::TYPE]);
        if !query.params().is_empty() {
            url.query_pairs_mut().extend_pairs(query.params());
        }
        self.fetch_page(url, &token).await
    }

    /// The page after `bundle`, or `None` on the last page. A `next` link to another origin is
    /// refused ([`FhirError::InvalidUrl`]): following it would send our token elsewhere.
    pub async fn next_page<R: Resource>(
        &self,
        bundle: &Bundle<R>,
    ) -> Result<Option<Bundle<R>>, FhirError> {
        let Some(next) = bundle.next_link() else {
            return Ok(None);
        };
        let url = self.check_next_link(next)?;
        let token = self.token().await?;
        self.fetch_page(url, &token).await.map(Some)
    }

    /// Searches and follows `next` links for at most `max_pages` pages in all (0 counts as 1),
    /// merging entries and outcomes into one bundle. If the bound stopped the paging, the
    /// returned bundle still has the `next` link of the last page read, so
    /// `next_link().is_some()` tells the caller the results are incomplete.
    pub async fn search_all<R: Resource>(
        &self,
        query: &SearchQuery<R>,
        max_pages: u32,
    ) -> Result<Bundle<R>, FhirError> {
        let mut all = self.search(query).await?;
        for _ in 1..max_pages.max(1) {
            let Some(page) = self.next_page(&all).await? else {
                break;
            };
            all.entry.extend(page.entry);
            all.outcomes.extend(page.outcomes);
            all.link = page.link;
        }
        Ok(all)
    }

    /// `POST [base]/{type}`, sent once (a POST is not idempotent). Returns the new id from the
    /// `Location` header when the server gives one.
    pub async fn create<R: Resource>(&self, resource: &R) -> Result<Option<Id<R>>, FhirError> {
        let url = self.config.base_url.join(&[R::TYPE]);
        let answer = self
            .write(Method::POST, url, resource_body(resource)?, None)
            .await?;
        let answer = check_status(answer, None)?;
        Ok(created_id(&answer))
    }

    /// `POST [base]/{type}` with `If-None-Exist: {criteria}` (FHIR conditional create), sent once.
    ///
    /// Safe to repeat from an outbox: with the same criteria the server creates at most one.
    pub async fn create_if_none_exist<R: Resource>(
        &self,
        resource: &R,
        criteria: &SearchQuery<R>,
    ) -> Result<ConditionalCreate<R>, FhirError> {
        let url = self.config.base_url.join(&[R::TYPE]);
        let condition = HeaderValue::from_str(&criteria.to_query_string())
            .map_err(|_| FhirError::InvalidUrl("if-none-exist criteria".to_owned()))?;
        let answer = self
            .write(Method::POST, url, resource_body(resource)?, Some(condition))
            .await?;
        match answer.status {
            StatusCode::CREATED => Ok(ConditionalCreate::Created(created_id(&answer))),
            StatusCode::OK | StatusCode::NOT_MODIFIED => {
                Ok(ConditionalCreate::AlreadyExists(created_id(&answer)))
            }
            StatusCode::PRECONDITION_FAILED => Ok(ConditionalCreate::MultipleMatches),
            _ => check_status(answer, None).map(|_| ConditionalCreate::Created(None)),
        }
    }

    /// `PUT [base]/{type}/{id}` with the body's `id` set to `id` (update, or create with a
    /// client-chosen id where the server allows `updateCreate`), sent once.
    pub async fn update<R: Resource>(
        &self,
        id: &Id<R>,
        resource: &R,
    ) -> Result<UpdateOutcome, FhirError> {
        let mut value = serde_json::to_value(resource).map_err(encode_error::<R>)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("id".to_owned(), id.as_str().into());
        }
        let body = serde_json::to_vec(&value).map_err(encode_error::<R>)?;
        let url = self.config.base_url.join(&[R::TYPE, id.as_str()]);
        let answer = self.write(Method::PUT, url, body, None).await?;
        match check_status(answer, None)?.status {
            StatusCode::CREATED => Ok(UpdateOutcome::Created),
            _ => Ok(UpdateOutcome::Updated),
        }
    }

    async fn token(&self) -> Result<Secret, FhirError> {
        match &self.token {
            Some(source) => Ok(source.access_token().await?),
            None => Err(TokenSourceError::new("this fhir client is anonymous").into()),
        }
    }

    fn check_next_link(&self, next: &str) -> Result<Url, FhirError> {
        // Relative links resolve under the base (hence the slash), absolute ones stand alone.
        let url = Url::parse(&format!("{}/", self.config.base_url))
            .and_then(|base| base.join(next))
            .map_err(|_| FhirError::InvalidUrl("bundle next link is not a url".to_owned()))?;
        if !self.config.base_url.same_origin(&url) {
            return Err(FhirError::InvalidUrl(
                "bundle next link points to another server".to_owned(),
            ));
        }
        Ok(url)
    }

    async fn fetch_page<R: Resource>(
        &self,
        url: Url,
        token: &Secret,
    ) -> Result<Bundle<R>, FhirError> {
        let answer = self.get(url, Some(token)).await?;
        let answer = check_status(answer, None)?;
        Bundle::from_slice(&answer.body)
    }

    fn request(&self, method: Method, url: Url, token: Option<&Secret>) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url).header(ACCEPT, FHIR_JSON);
        if let Some(timeout) = self.config.request_timeout {
            request = request.timeout(timeout);
        }
        for (name, value) in &self.config.extra_headers {
            request = request.header(name, value);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        request
    }

    async fn get(&self, url: Url, token: Option<&Secret>) -> Result<Answer, FhirError> {
        let response = send_idempotent(&self.config.retry, || {
            self.request(Method::GET, url.clone(), token)
        })
        .await
        .map_err(|e| match e {
            SendError::Timeout { attempts } => FhirError::Timeout { attempts },
            SendError::Transport { source, .. } => FhirError::Transport(source.without_url()),
        })?;
        self.read_answer(response).await
    }

    async fn write(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
        if_none_exist: Option<HeaderValue>,
    ) -> Result<Answer, FhirError> {
        let token = self.token().await?;
        let mut request = self
            .request(method, url, Some(&token))
            .header(CONTENT_TYPE, FHIR_JSON)
            // The id is all we need back; a full echo would only carry more data.
            .header("prefer", "return=minimal")
            .body(body);
        if let Some(condition) = if_none_exist {
            request = request.header("if-none-exist", condition);
        }
        let response = request.send().await.map_err(transport_error)?;
        self.read_answer(response).await
    }

    async fn read_answer(&self, mut response: reqwest::Response) -> Result<Answer, FhirError> {
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let limit = self.config.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(FhirError::TooLarge { limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > limit {
                return Err(FhirError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(status = status.as_u16(), bytes = body.len(), "fhir answer");
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn transport_error(e: reqwest::Error) -> FhirError {
    if e.is_timeout() {
        FhirError::Timeout { attempts: 1 }
    } else {
        FhirError::Transport(e.without_url())
    }
}

fn resource_body<R: Resource>(resource: &R) -> Result<Vec<u8>, FhirError> {
    serde_json::to_vec(resource).map_err(encode_error::<R>)
}

fn encode_error<R: Resource>(e: serde_json::Error) -> FhirError {
    FhirError::Decode {
        resource_type: R::TYPE.to_owned(),
        path: ".".to_owned(),
        message: format!("could not encode: {}", crate::error::redact(&e.to_string())),
    }
}

/// Maps error statuses to [`FhirError`]; `read` names the resource for 404/410.
fn check_status(answer: Answer, read: Option<(&'static str, &str)>) -> Result<Answer, FhirError> {
    let status = answer.status;
    if status.is_success() {
        return Ok(answer);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(FhirError::Unauthorized);
    }
    if let (Some((resource_type, id)), 404 | 410) = (read, status.as_u16()) {
        return Err(FhirError::NotFound {
            resource_type,
            id: id.to_owned(),
        });
    }
    let outcome = serde_json::from_slice::<OperationOutcome>(&answer.body).ok();
    Err(FhirError::Status { status, outcome })
}

/// The id in `Location` (`…/Type/id/_history/v`), else in a returned body.
fn created_id<R: Resource>(answer: &Answer) -> Option<Id<R>> {
    let from_location = answer
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| {
            Reference {
                reference: Some(location.to_owned()),
                ..Reference::default()
            }
            .id_of::<R>()
        });
    from_location.or_else(|| {
        let body: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
        if body.get("resourceType")?.as_str()? != R::TYPE {
            return None;
        }
        Id::new(body.get("id")?.as_str()?).ok()
    })
}
