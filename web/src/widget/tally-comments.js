// The thread's element, loaded by tally.js when a page has a <tally-comments>.
import { TallyComments } from './comments.js';

if (!customElements.get('tally-comments')) customElements.define('tally-comments', TallyComments);

export { TallyComments };
