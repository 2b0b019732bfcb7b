/**
 * fetch with the two timeouts huggingface_hub applies (HF_HUB_DOWNLOAD_TIMEOUT): no response headers within
 * the timeout, or no body bytes for that long, aborts the request with a StallError the retry loop knows.
 */

export class StallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StallError";
  }
}

/** The server answered with bytes cut short: the connection closed before Content-Length was reached. */
export class TruncatedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TruncatedError";
  }
}

export type Fetch = typeof fetch;

export function timedFetch(timeoutMs: number, base: Fetch = fetch): Fetch {
  return async (input, init) => {
    const controller = new AbortController();
    const outer = init?.signal;
    if (outer) {
      if (outer.aborted) controller.abort(outer.reason);
      else outer.addEventListener("abort", () => controller.abort(outer.reason), { once: true });
    }
    const seconds = timeoutMs / 1000;
    // Timers never keep the process alive: a response nobody reads must not delay exit.
    let timer = setTimeout(() => controller.abort(new StallError(`no response within ${seconds} s (HF_HUB_DOWNLOAD_TIMEOUT)`)), timeoutMs).unref();
    let response: Response;
    try {
      response = await base(input, { ...init, signal: controller.signal });
    } catch (error) {
      clearTimeout(timer);
      throw controller.signal.aborted && controller.signal.reason instanceof StallError ? controller.signal.reason : error;
    }
    clearTimeout(timer);
    if (!response.body) return response;
    let received = 0;
    const reader = response.body.getReader();
    // The idle clock runs only while a read waits on the network: a consumer that is slow to ask (a busy disk
    // under backpressure) is not a stalled server.
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => controller.abort(new StallError(`no data for ${seconds} s after ${received} bytes (HF_HUB_DOWNLOAD_TIMEOUT)`)),
        timeoutMs,
      ).unref();
    };
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        arm();
        try {
          const { done, value } = await reader.read();
          clearTimeout(timer);
          if (done) {
            c.close();
            return;
          }
          received += value.byteLength;
          c.enqueue(value);
        } catch (error) {
          clearTimeout(timer);
          c.error(controller.signal.aborted && controller.signal.reason instanceof StallError ? controller.signal.reason : error);
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    });
    const wrapped = new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
    // Callers read resp.url (the library compares origins); a Response built by hand has none.
    Object.defineProperty(wrapped, "url", { value: response.url });
    return wrapped;
  };
}
