export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === "/ping") return Response.json({ status: "Healthy" });
    const payload = await request.json();
    payload.response = "original";
    const upstream = await fetch(`${env.UPSTREAM}/invocations`, {
      method: "POST",
      headers: { authorization: request.headers.get("authorization"), "content-type": "application/json" },
      body: JSON.stringify(payload),
    });
    if (!upstream.ok) return new Response(upstream.body, { status: upstream.status });
    const session = upstream.headers.get("x-amzn-bedrock-agentcore-runtime-session-id");
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    let buffered = "";
    let metadata;
    const transform = new TransformStream({
      transform(chunk, controller) {
        buffered += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const event = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = JSON.parse(line.slice(5));
            const text = data.event?.contentBlockDelta?.delta?.text;
            if (text) controller.enqueue(encoder.encode(text));
            if (data.event?.metadata) metadata = data.event.metadata;
          }
        }
      },
      flush(controller) {
        controller.enqueue(encoder.encode(
          `\n----------\n${JSON.stringify(metadata)}\n${JSON.stringify({ runtimeSessionId: session })}`));
      },
    });
    return new Response(upstream.body.pipeThrough(transform), {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
