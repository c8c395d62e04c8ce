export default {
  fetch(request, env) {
    const url = new URL(request.url);
    return fetch(`${env.UPSTREAM}${url.pathname}${url.search}`, request);
  },
};
