// tally's embeddable widget: <tally-rating> and <tally-comments>.
// <script type="module" src="https://comments.example.com/widget/tally.js"></script>
import { TallyRating } from './rating.js';
import { TallyComments } from './comments.js';

if (!customElements.get('tally-rating')) customElements.define('tally-rating', TallyRating);
if (!customElements.get('tally-comments')) customElements.define('tally-comments', TallyComments);

export { TallyRating, TallyComments };
