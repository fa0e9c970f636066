package org.obsstack.esstandin;

import org.apache.lucene.analysis.TokenStream;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.IndexVersions;
import org.elasticsearch.index.analysis.AbstractTokenFilterFactory;

/**
 * The unique token filter with its setting "only_on_same_position" (default false).
 *
 * Upstream analyzes indices created before IndexVersions.UNIQUE_TOKEN_FILTER_POS_FIX
 * (or with the deprecated "correct_position_increment: false") with an older filter
 * that drops the position increments of removed tokens. That filter is not carried here:
 * such an index is refused rather than analyzed differently from a full distribution.
 */
final class UniqueTokenFilterFactory extends AbstractTokenFilterFactory {
    private final boolean onlyOnSamePosition;

    UniqueTokenFilterFactory(
        IndexSettings indexSettings, Environment environment, String name, Settings settings) {
        super(name, settings);
        onlyOnSamePosition = settings.getAsBoolean("only_on_same_position", false);
        boolean correctPositions = settings.getAsBoolean(
            "correct_position_increment",
            indexSettings.getIndexVersionCreated().onOrAfter(IndexVersions.UNIQUE_TOKEN_FILTER_POS_FIX));
        if (correctPositions == false) {
            throw new IllegalArgumentException(
                "token filter [" + name + "]: the obs-standin-analysis plugin lacks the unique "
                    + "filter of indices created before " + IndexVersions.UNIQUE_TOKEN_FILTER_POS_FIX);
        }
    }

    @Override
    public TokenStream create(TokenStream tokenStream) {
        return new UniqueTokenFilter(tokenStream, onlyOnSamePosition);
    }
}
