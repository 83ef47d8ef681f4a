// The console's pages, in navigation order. Adding a page: write one module exporting
// {id, title, roles?, render(view, ctx)} and list it here (and, for a faster first load, in
// index.html's modulepreload links).
import overview from './overview.js';
import issues from './issues.js';
import findings from './findings.js';
import pairings from './pairings.js';
import service from './service.js';
import surveys from './surveys.js';
import audit from './audit.js';

export const PAGES = [overview, issues, findings, pairings, service, surveys, audit];
