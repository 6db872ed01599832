// Renders GraphiQL into the page GET /graphql serves (GRAPHQL_GRAPHIQL=true).
// A file of its own rather than an inline script, so the page's CSP can
// refuse every inline script.
'use strict';

(function () {
  // GraphiQL 4.1.2 keeps each run in its history, in localStorage, with the
  // run's headers, the token among them, whatever shouldPersistHeaders
  // says. Its history and favourites are stored here without them.
  const withoutHeaders = (key, value) =>
    /^graphiql:(queries|favorites)$/.test(key)
      ? JSON.stringify(JSON.parse(value), (name, field) => (name === 'headers' ? undefined : field))
      : value;
  const ours = () => Object.keys(localStorage).filter((key) => key.startsWith('graphiql:'));
  const storage = {
    getItem: (key) => localStorage.getItem(key),
    setItem: (key, value) => localStorage.setItem(key, withoutHeaders(key, value)),
    removeItem: (key) => localStorage.removeItem(key),
    clear: () => ours().forEach((key) => localStorage.removeItem(key)),
    get length() {
      return ours().length;
    },
  };

  const root = document.getElementById('graphiql');
  // GraphiQL fills its container, which fills the window.
  document.body.style.margin = '0';
  root.style.height = '100vh';
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url: '/graphql' }),
      // The api wants a bearer token on every operation, schema included;
      // the human replaces the placeholder.
      defaultHeaders: '{"Authorization": "Bearer <token>"}',
      defaultEditorToolsVisibility: 'headers',
      // A token is a secret: never kept in the browser's localStorage.
      shouldPersistHeaders: false,
      storage,
      defaultQuery:
        '# Put your token in the Headers tab below, then run (Ctrl-Enter).\n' +
        '# After a new token, reload the schema (Shift-Ctrl-R) for completion and docs.\n' +
        '{\n  me {\n    organization { slug }\n    user { role }\n  }\n}\n',
    }),
  );
})();
