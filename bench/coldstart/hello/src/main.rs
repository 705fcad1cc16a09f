//! Hello-world lambda_http function: the cold start baseline. Answers every request with
//! 200 "hello". Set up as `cargo lambda new` sets one up (the default tracing subscriber,
//! the multi-threaded Tokio runtime), so the difference to a Sentinel function is what
//! that function adds.

use lambda_http::{run, service_fn, tracing, Body, Error, Request, Response};

async fn hello(_request: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::from("hello"))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    run(service_fn(hello)).await
}
