package org.obsstack.esstandin;

import java.util.List;
import java.util.regex.Pattern;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.AbstractTokenFilterFactory;

/**
 * The pattern_capture token filter: Lucene's PatternCaptureGroupTokenFilter with the
 * settings of analysis-common's factory, "patterns" (required, a list of Java regular
 * expressions) and "preserve_original" (default true).
 */
final class PatternCaptureGroupTokenFilterFactory extends AbstractTokenFilterFactory {
    private final Pattern[] patterns;
    private final boolean preserveOriginal;

    PatternCaptureGroupTokenFilterFactory(
        IndexSettings indexSettings, Environment environment, String name, Settings settings) {
        super(name, settings);
        List<String> regexes = settings.getAsList("patterns", null, false);
        if (regexes == null) {
            throw new IllegalArgumentException(
                "required setting 'patterns' is missing for token filter [" + name + "]");
        }
        patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
        preserveOriginal = settings.getAsBoolean("preserve_original", true);
    }

    @Override
    public TokenFilter create(TokenStream tokenStream) {
        return new PatternCaptureGroupTokenFilter(tokenStream, preserveOriginal, patterns);
    }
}
