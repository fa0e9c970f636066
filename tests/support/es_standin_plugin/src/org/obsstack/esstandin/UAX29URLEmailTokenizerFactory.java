package org.obsstack.esstandin;

import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.standard.StandardAnalyzer;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.AbstractTokenizerFactory;

/**
 * The uax_url_email tokenizer: Lucene's UAX29URLEmailTokenizer (UAX #29 word breaks that
 * keep URLs and e-mail addresses whole), with the setting "max_token_length" (default
 * StandardAnalyzer's 255).
 */
final class UAX29URLEmailTokenizerFactory extends AbstractTokenizerFactory {
    private final int maxTokenLength;

    UAX29URLEmailTokenizerFactory(
        IndexSettings indexSettings, Environment environment, String name, Settings settings) {
        super(indexSettings, settings, name);
        maxTokenLength = settings.getAsInt("max_token_length", StandardAnalyzer.DEFAULT_MAX_TOKEN_LENGTH);
    }

    @Override
    public Tokenizer create() {
        UAX29URLEmailTokenizer tokenizer = new UAX29URLEmailTokenizer();
        tokenizer.setMaxTokenLength(maxTokenLength);
        return tokenizer;
    }
}
