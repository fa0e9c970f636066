package org.obsstack.esstandin;

import java.io.IOException;
import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.FilteringTokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;

/**
 * Drops a token whose term was already seen in the stream or, with onlyOnSamePosition,
 * at the same position. A FilteringTokenFilter, as upstream's since the position fix:
 * the position increments of dropped tokens are added to the next token kept.
 */
final class UniqueTokenFilter extends FilteringTokenFilter {
    private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
    private final PositionIncrementAttribute positionIncrement =
        addAttribute(PositionIncrementAttribute.class);
    private final CharArraySet seen = new CharArraySet(8, false);
    private final boolean onlyOnSamePosition;

    UniqueTokenFilter(TokenStream input, boolean onlyOnSamePosition) {
        super(input);
        this.onlyOnSamePosition = onlyOnSamePosition;
    }

    @Override
    protected boolean accept() {
        // Only on the same position: a token at a new position starts an empty set.
        if (onlyOnSamePosition && positionIncrement.getPositionIncrement() > 0) {
            seen.clear();
        }
        boolean duplicate = seen.contains(term.buffer(), 0, term.length());
        // The set keeps the array it is given: store a copy, the buffer is reused.
        seen.add(term.toString().toCharArray());
        return duplicate == false;
    }

    @Override
    public void reset() throws IOException {
        super.reset();
        seen.clear();
    }
}
