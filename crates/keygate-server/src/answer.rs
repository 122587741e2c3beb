//! The answer of a hand-written layer ([`crate::access_log`], [`crate::weight`]): the inner
//! service's future polled in place on the common path, a boxed future where the layer has to
//! wait for something first, or a refusal the layer made itself. One type, so each layer's own
//! future only adds what it does with the answer.

use crate::ApiError;
use axum::response::{IntoResponse as _, Response};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// Where a layer's answer comes from.
    #[project = AnswerProj]
    pub(crate) enum Answer<F> {
        /// The inner service's, as it is (nearly every request): no allocation.
        Inner { #[pin] fut: F },
        /// Made by an async step of the layer's own (it waits for something, then answers).
        Boxed { fut: Pin<Box<dyn Future<Output = Response> + Send>> },
        /// A refusal made by the layer.
        Ready { res: Option<Response> },
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.project() {
            AnswerProj::Inner { fut } => fut.poll(cx).map(|Ok(res)| res),
            AnswerProj::Boxed { fut } => fut.as_mut().poll(cx),
            AnswerProj::Ready { res } => {
                Poll::Ready(res.take().unwrap_or_else(|| {
                    ApiError::Internal("an answer polled after it was ready".into()).into_response()
                }))
            }
        }
    }
}
